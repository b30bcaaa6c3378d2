"""OpenTelemetry tracing of both services, off unless ``OTEL_TRACES_EXPORTER`` names an exporter.

Off (the variable unset or ``none``, or ``OTEL_SDK_DISABLED=true``) nothing is installed:
no interceptor (any interceptor moves every RPC off grpc's registered-method path,
:mod:`services.common.observe`), no asyncpg instrumentation, no provider; the SDK and the
instrumentations are not even imported, :func:`span` is a shared null context and log lines
carry no ids. A ``traceparent`` a caller sends then only names the trace the audit row
records (:func:`request_trace_id`).

On, :func:`start` builds a TracerProvider from the standard ``OTEL_*`` variables (read and
checked by :mod:`services.common.tracing_settings`) and :class:`Tracing` hands that provider
explicitly to every instrumentation: the grpc.aio server interceptor (extracts W3C
``traceparent``), the client interceptors of the action service's channel to the policy
service (injects it), asyncpg (a span per database round trip), the explicit spans of this
module and the ``trace_id``/``span_id`` of JSON log lines. The process's global
OpenTelemetry provider is left alone. See docs/architecture.md §9.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

import grpc
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.common.accesslog import QUIET_PREFIXES
from services.common.observe import Context, Observer, status_code
from services.common.tracing_settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

# A server span is an error only for codes that are the server's fault (OTel's gRPC
# conventions): a refusal such as PERMISSION_DENIED is a correct answer.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

# The tracer of the installed Tracing (explicit spans, log ids); None while tracing is off.
_tracer: trace.Tracer | None = None
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


def span(name: str) -> contextlib.AbstractContextManager[trace.Span | None]:
    """A span named ``name``, current inside the ``with``; ``None`` (and no cost) when off.

    Set attributes only on a span you got: ``with span("x") as s: if s: s.set_attribute…``.
    """
    tracer = _tracer
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(name)


def current_ids() -> tuple[str, str] | None:
    """The current span's trace and span ids (hex) for a log line; None when tracing is
    off or no span is current.
    """
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_trace_id() -> str | None:
    """The current span's trace id (hex), or None (tracing off, or no span current)."""
    ids = current_ids()
    return None if ids is None else ids[0]


_W3C = TraceContextTextMapPropagator()


def request_trace_id(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The trace an RPC belongs to, as 32 hex digits, for its audit row; None when untraced.

    On, it is the server span's trace (the caller's ``traceparent`` continued, or a new
    trace). Off, it is the trace of the caller's ``traceparent``, parsed by OpenTelemetry's
    W3C propagator; a malformed header is ignored, as W3C trace-context says, so the row
    never records a value the caller could shape beyond a valid trace id.
    """
    if _tracer is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return format(context.trace_id, "032x")
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            extracted = _W3C.extract({"traceparent": value})
            context = trace.get_current_span(extracted).get_span_context()
            return format(context.trace_id, "032x") if context.is_valid else None
    return None


def record_status(
    _method: str, _request: Any, context: Context, _start: float, failed: bool
) -> None:
    """Observer (:mod:`services.common.observe`): the RPC's final code on its server span.

    The server interceptor sees codes set with ``set_code`` and ``abort``; the funnel's
    ``abort_with_status`` passes it by.
    """
    current = trace.get_current_span()
    if not current.is_recording():
        return
    code = grpc.StatusCode[status_code(context, failed)]
    current.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in SERVER_ERRORS:
        current.set_status(trace.Status(trace.StatusCode.ERROR, code.name))


def _not_quiet(details: grpc.HandlerCallDetails) -> bool:
    """Health checks and reflection get no span (a load balancer's probes are not traffic)."""
    return not str(details.method).startswith(QUIET_PREFIXES)


class Tracing:
    """One process's tracing: :data:`OFF` installs nothing; on, every instrumentation gets
    this object's provider.
    """

    def __init__(self, provider: TracerProvider | None = None, *, owned: bool = False) -> None:
        """Wrap ``provider`` (None: off).

        Args:
            provider: The SDK provider spans go to; tests pass one with an in-memory exporter.
            owned: Whether :meth:`shutdown` also flushes and shuts the provider down.
        """
        self.provider = provider
        self._owned = owned

    @property
    def enabled(self) -> bool:
        """Whether this process traces."""
        return self.provider is not None

    def install(self) -> Self:
        """Instrument asyncpg (process-wide) and turn on :func:`span` and the log ids."""
        global _tracer
        if self.provider is None:
            return self
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument(tracer_provider=self.provider)
        _tracer = self.provider.get_tracer("fleetward")
        return self

    def shutdown(self) -> None:
        """Undo :meth:`install`; flush the spans and shut the provider down when owned."""
        global _tracer
        if self.provider is None:
            return
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        _tracer = None
        instrumentor = AsyncPGInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        if self._owned:
            self.provider.shutdown()

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The grpc.aio server interceptors to install: none when off."""
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(
            tracer_provider=self.provider, filter_=_not_quiet
        )
        return [interceptor]

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """The grpc.aio client interceptors of a channel to another service: none when off."""
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(
            tracer_provider=self.provider
        )
        return interceptors

    def observers(self) -> tuple[Observer, ...]:
        """RPC observers to add (:func:`record_status`): none when off."""
        return () if self.provider is None else (record_status,)


OFF = Tracing()


def start(settings: TracingSettings) -> Tracing:
    """The installed tracing ``settings`` ask for (:data:`OFF` when off): a provider with a
    batching processor per exporter, owned (flushed by :meth:`Tracing.shutdown`).
    """
    if not settings.enabled:
        return OFF
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.service_name}),
        sampler=_sampler(settings),
    )
    for name in settings.exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, settings)))
    return Tracing(provider, owned=True).install()


def _sampler(settings: TracingSettings) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    root: Sampler = sampling.ALWAYS_ON
    if settings.sampler.endswith("traceidratio"):
        root = sampling.TraceIdRatioBased(settings.sampler_ratio)
    elif settings.sampler.endswith("always_off"):
        root = sampling.ALWAYS_OFF
    return sampling.ParentBased(root) if settings.sampler.startswith("parentbased_") else root


def _exporter(name: str, settings: TracingSettings) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    # Headers, certificates, timeout and compression: the exporter reads OTEL_EXPORTER_OTLP_*.
    return OTLPSpanExporter(endpoint=settings.otlp_endpoint)
