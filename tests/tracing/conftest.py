"""Tracing tests: an in-memory exporter, and the real services on port 0 traced into it.

Each module gets its own SDK provider (a synchronous processor into an
``InMemorySpanExporter``) as OpenTelemetry's *global* provider, which is what a test's
parent span and ``fleetward.client``'s interceptor use, and puts the previous one back at
its end: OpenTelemetry lets a process set it once, so :func:`global_tracer_provider`
restores its two module globals as opentelemetry-test-utils does. The services get the
provider explicitly (``traced``); a module overrides ``traced`` to run them untraced.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from services.common.logs import JsonFormatter
from services.common.tracing import Tracing
from tests.conftest import Secrets
from tests.servers import running_action_server, running_policy_server, write_test_policy


@contextlib.contextmanager
def global_tracer_provider(provider: TracerProvider) -> Iterator[None]:
    """``provider`` as OpenTelemetry's global tracer provider for the block, then the one
    before it again (usually none: tracers handed out meanwhile fall back to no-ops)."""
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(provider)
    try:
        yield
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """Where this module's spans end up, each as soon as it ends."""
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """This module's provider, global for the module only."""
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    with global_tracer_provider(sdk):
        yield sdk
    sdk.shutdown()


@pytest.fixture(autouse=True)
def no_spans_yet(exporter: InMemorySpanExporter) -> None:
    """Each test sees only its own spans."""
    exporter.clear()


@pytest.fixture(scope="module")
def traced(provider: TracerProvider) -> Iterator[Tracing]:
    """The services' tracing: on, into ``provider`` (asyncpg instrumented for the module)."""
    tracing = Tracing(provider).install()
    yield tracing
    tracing.shutdown()


@dataclass(frozen=True)
class Services:
    """The targets of the module's two services."""

    policy: str
    actions: str


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test policy (demo roles, demo users in every workspace)."""
    return write_test_policy(tmp_path_factory.mktemp("policies"))


@pytest.fixture(scope="module")
async def services(
    traced: Tracing, policy_dir: Path, database_dsn: str, dev_secrets: Secrets
) -> AsyncIterator[Services]:
    """The real policy and action services with ``traced``, on the session database."""
    async with (
        running_policy_server(policy_dir, dev_secrets, traced=traced) as policy,
        # The suites share one event loop: 5 s leaves room for queueing (tests/actions).
        running_action_server(
            database_dsn, policy, dev_secrets, traced=traced, policy_timeout_ms=5000
        ) as actions,
    ):
        yield Services(policy, actions)


def hex_id(trace_id: int) -> str:
    """A trace id as log lines and W3C ``traceparent`` write it."""
    return format(trace_id, "032x")


async def trace_spans(
    exporter: InMemorySpanExporter,
    trace_id: int,
    complete: Callable[[list[ReadableSpan]], bool],
    timeout_s: float = 5.0,
) -> list[ReadableSpan]:
    """The finished spans of one trace once ``complete`` says they are all there (a
    client span ends in its call's done callback, after the response arrived)."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        if complete(spans) or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def json_log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every log record of the process at INFO and above, as the services' JSON lines;
    yields a function returning the lines so far."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[dict[str, Any]]:
    """Record the keyword arguments of every call of ``owner.name`` (still called)."""
    calls: list[dict[str, Any]] = []
    real = getattr(owner, name)

    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, record)
    return calls


def asyncpg_instrumented() -> bool:
    """Whether asyncpg's statements are wrapped by OpenTelemetry's instrumentation."""
    import asyncpg

    return hasattr(asyncpg.Connection.execute, "__wrapped__")
