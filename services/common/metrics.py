"""Prometheus metrics shared by both services: RPCs by method and code, latency histograms."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import prometheus_client

RPC_REQUESTS = prometheus_client.Counter(
    "fleetward_rpc_requests_total",
    "gRPC requests handled, by method and status code.",
    ["method", "code"],
)
RPC_LATENCY = prometheus_client.Histogram(
    "fleetward_rpc_latency_seconds",
    "gRPC handling latency (for streams: the stream's lifetime), by method.",
    ["method"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


def start_metrics_server(port: int) -> int:
    """Serve /metrics on ``port`` (0 disables it); return the port."""
    if port:
        prometheus_client.start_http_server(port)
    return port


def _code_of(context: grpc.aio.ServicerContext[Any, Any], failed: bool) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC by method and final status code and observes its latency."""

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
                    RPC_LATENCY.labels(method).observe(time.perf_counter() - start)
                    RPC_REQUESTS.labels(method, _code_of(context, failed)).inc()

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
                    RPC_LATENCY.labels(method).observe(time.perf_counter() - start)
                    RPC_REQUESTS.labels(method, _code_of(context, failed)).inc()

            return handler._replace(unary_stream=stream)  # type: ignore[no-any-return]
        return handler  # type: ignore[no-any-return]
