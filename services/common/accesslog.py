"""One structured log line per RPC: method, status code, latency and the request's workspace.

The action line of an Execute (``services.actions.lifecycle``) carries the action id,
request id, decision id and subject; this line adds what every RPC has. Health checks
and reflection log at DEBUG so that load-balancer probes do not flood the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

log = logging.getLogger("fleetward.access")
QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _code(context: grpc.aio.ServicerContext[Any, Any], failed: bool) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"


def _emit(
    method: str,
    request: Any,
    context: grpc.aio.ServicerContext[Any, Any],
    start: float,
    failed: bool,
) -> None:
    level = logging.DEBUG if method.startswith(QUIET_PREFIXES) else logging.INFO
    if not log.isEnabledFor(level):
        return
    extra: dict[str, Any] = {
        "method": method,
        "code": _code(context, failed),
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
        "event": "rpc",
    }
    workspace = getattr(request, "workspace_id", "")
    if isinstance(workspace, str) and workspace:
        extra["workspace_id"] = workspace[:64]
    request_id = getattr(request, "request_id", "")
    if isinstance(request_id, str) and request_id:
        extra["request_id"] = request_id[:128]
    log.log(level, "%s %s", method, extra["code"], extra=extra)


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    """Logs every unary and server-streaming RPC once it ends."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap unary and server-streaming handlers; pass others through."""
        handler: Any = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                start, failed = time.perf_counter(), True
                try:
                    reply = await inner(request, context)
                    failed = False
                    return reply
                finally:
                    _emit(method, request, context, start, failed)

            return handler._replace(unary_unary=unary)  # type: ignore[no-any-return]
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                start, failed = time.perf_counter(), True
                try:
                    async for item in inner_stream(request, context):
                        yield item
                    failed = False
                finally:
                    _emit(method, request, context, start, failed)

            return handler._replace(unary_stream=stream)  # type: ignore[no-any-return]
        return handler  # type: ignore[no-any-return]
