"""One error funnel for every RPC of both services: a caller always gets one rich status.

A handler's work raises domain errors (:class:`ServiceError`); the funnel turns them into
their status, lets each service map its own infrastructure errors (``translate``: the
action service's database errors become ``DATABASE_UNAVAILABLE``), and turns anything
else into INTERNAL with a correlation id: the log line holds the traceback and the same
id, the caller sees neither a class name nor a message from inside the process. Unary
handlers use :func:`unary`, server-streaming ones :func:`stream` (an exception after the
first message is funnelled the same way, never grpc's "Unexpected <class …>").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from services.common.status import ServiceError

log = logging.getLogger(__name__)
T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
Translate = Callable[[Exception], ServiceError | None]


def internal_error(correlation_id: str) -> ServiceError:
    """INTERNAL ``INTERNAL`` naming only a correlation id (the log has the rest)."""
    return ServiceError(
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        f"internal error; correlation id {correlation_id} (the service log has the details)",
        metadata={"correlation_id": correlation_id},
    )


def unexpected(exc: BaseException, what: str) -> ServiceError:
    """Log ``exc`` with a fresh correlation id; the INTERNAL error a caller may see."""
    correlation_id = str(uuid.uuid4())
    log.error(
        "unexpected error in %s (correlation id %s)",
        what,
        correlation_id,
        exc_info=exc,
        extra={"correlation_id": correlation_id},
    )
    return internal_error(correlation_id)


def _error(exc: Exception, translate: Translate | None, what: str) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    translated = translate(exc) if translate is not None else None
    return translated if translated is not None else unexpected(exc, what)


async def unary(
    context: Context,
    work: Callable[[], Awaitable[T]],
    translate: Translate | None = None,
    what: str = "an RPC",
) -> T:
    """The result of ``work()``, or the call aborted with exactly one rich status."""
    try:
        return await work()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # every failure leaves as one status
        error = _error(exc, translate, what)
    await context.abort_with_status(error.to_status())
    raise AssertionError("abort_with_status returned")  # pragma: no cover


async def stream(
    context: Context,
    items: AsyncIterator[T],
    translate: Translate | None = None,
    what: str = "a stream",
) -> AsyncIterator[T]:
    """``items``, ending the stream with one rich status if they raise, at any point."""
    try:
        async for item in items:
            yield item
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # every failure leaves as one status
        error = _error(exc, translate, what)
        await context.abort_with_status(error.to_status())


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
UnaryHandler = Callable[[S, Req, Context], Awaitable[Resp]]
StreamHandler = Callable[[S, Req, Context], AsyncIterator[Resp]]


def unary_rpc(
    translate: Translate | None = None,
) -> Callable[[UnaryHandler[S, Req, Resp]], UnaryHandler[S, Req, Resp]]:
    """Decorate a unary servicer method: its body is the work, run through :func:`unary`.

    Every failure the body raises leaves as one rich status (``translate`` maps the
    service's own infrastructure errors first); the log names the method.
    """

    def decorate(handler: UnaryHandler[S, Req, Resp]) -> UnaryHandler[S, Req, Resp]:
        @functools.wraps(handler)
        async def rpc(self: S, request: Req, context: Context) -> Resp:
            return await unary(
                context, lambda: handler(self, request, context), translate, handler.__name__
            )

        return rpc

    return decorate


def stream_rpc(
    translate: Translate | None = None,
) -> Callable[[StreamHandler[S, Req, Resp]], StreamHandler[S, Req, Resp]]:
    """Decorate a server-streaming servicer method (an async generator) like
    :func:`unary_rpc`: a failure before the first message or after any leaves as one status.
    """

    def decorate(handler: StreamHandler[S, Req, Resp]) -> StreamHandler[S, Req, Resp]:
        @functools.wraps(handler)
        async def rpc(self: S, request: Req, context: Context) -> AsyncIterator[Resp]:
            items = handler(self, request, context)
            async for item in stream(context, items, translate, handler.__name__):
                yield item

        return rpc

    return decorate
