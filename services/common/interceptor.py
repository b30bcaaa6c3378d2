"""One server interceptor that reports every finished RPC to observers (metrics, access log).

A single wrapper per call keeps the hot path short; each observer gets the method, the
request, the context (for the final status code), the start time and whether the handler
raised.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Observer = Callable[[str, Any, Context, float, bool], None]


def status_code(context: Context, failed: bool) -> str:
    """The RPC's final status code name (UNKNOWN for an exception that set none)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Calls every observer once per unary or server-streaming RPC, when it ends."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._observers = tuple(observers)

    def _done(
        self, method: str, request: Any, context: Context, start: float, failed: bool
    ) -> None:
        for observe in self._observers:
            observe(method, request, context, start, failed)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap unary and server-streaming handlers; pass others through."""
        # The typeshed stubs describe sync handlers; the aio ones are coroutines and
        # async generators, so the handler is handled as Any here.
        handler: Any = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None
        done = self._done
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: Context) -> Any:
                start, failed = time.perf_counter(), True
                try:
                    reply = await inner(request, context)
                    failed = False
                    return reply
                finally:
                    done(method, request, context, start, failed)

            return handler._replace(unary_unary=unary)  # type: ignore[no-any-return]
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                start, failed = time.perf_counter(), True
                try:
                    async for item in inner_stream(request, context):
                        yield item
                    failed = False
                finally:
                    done(method, request, context, start, failed)

            return handler._replace(unary_stream=stream)  # type: ignore[no-any-return]
        return handler  # type: ignore[no-any-return]
