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
