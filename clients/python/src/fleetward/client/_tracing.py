"""Opening channels, traced when OpenTelemetry's gRPC instrumentation is installed.

With ``fleetward-client[tracing]`` (``opentelemetry-api`` and
``opentelemetry-instrumentation-grpc``) every channel the clients open carries
OpenTelemetry's client interceptor: each call is a client span of the application's
tracer provider and sends the current trace context (W3C ``traceparent``), so the services'
spans join the caller's trace. Without the extra nothing is imported or added. A channel
passed to a client (``channel=``) is used as it is.

The blocking clients trace unary calls only: OpenTelemetry's blocking interceptor turns a
server stream into a bare generator (no ``cancel()``) that keeps its span current in the
caller's thread between items, so ``watch_actions`` there goes untraced.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any

import grpc

Options = Sequence[tuple[str, str | int]]


@functools.cache
def _instrumentation() -> Any | None:
    """``opentelemetry.instrumentation.grpc``, or None when it is not installed."""
    try:
        return importlib.import_module("opentelemetry.instrumentation.grpc")
    except ImportError:
        return None


def open_aio_channel(
    target: str, credentials: grpc.ChannelCredentials | None, options: Options
) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to ``target`` (TLS with ``credentials``), traced if installed."""
    instrumentation = _instrumentation()
    interceptors = None if instrumentation is None else instrumentation.aio_client_interceptors()
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


def open_channel(
    target: str, credentials: grpc.ChannelCredentials | None, options: Options
) -> grpc.Channel:
    """A blocking channel to ``target`` (TLS with ``credentials``), its unary calls traced
    if installed.
    """
    if credentials is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = grpc.secure_channel(target, credentials, options=options)
    instrumentation = _instrumentation()
    if instrumentation is None:
        return channel
    interceptor = instrumentation.client_interceptor(filter_=_unary_only)
    traced: grpc.Channel = instrumentation.intercept_channel(channel, interceptor)
    return traced


def _unary_only(call: Any) -> bool:
    """Whether a blocking call is traced: not when it streams its responses."""
    return not getattr(call, "is_server_stream", False)
