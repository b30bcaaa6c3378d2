"""Tracing off (the default): nothing installed, and no trace ids in the log, even when a
caller sends a ``traceparent``; only the audit row records the caller's trace id."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from fleetward.client import AsyncActionsClient, ClientConfig, PauseAgent
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.common import tracing
from services.common.tracing import Tracing
from tests.conftest import NewWorkspace, Secrets
from tests.servers import running_action_server, running_policy_server
from tests.tracing.conftest import (
    Services,
    asyncpg_instrumented,
    hex_id,
    json_log_lines,
    spy,
)

EXECUTE = "/fleetward.actions.v1.ActionService/Execute"


@pytest.fixture(scope="module")
def traced(provider: TracerProvider) -> Tracing:
    """The services untraced, as by default; the test process still has its provider, so
    the client sends a ``traceparent`` they ignore."""
    return tracing.OFF


async def test_untraced_servers_install_no_interceptor_and_no_asyncpg_spans(
    policy_dir: Path, database_dsn: str, dev_secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = spy(monkeypatch, grpc.aio, "server")
    channels = spy(monkeypatch, grpc.aio, "insecure_channel")
    async with (
        running_policy_server(policy_dir, dev_secrets) as policy,
        running_action_server(database_dsn, policy, dev_secrets),
    ):
        pass
    assert [call["interceptors"] for call in servers] == [None, None]  # policy, actions
    assert [call["interceptors"] for call in channels] == [None]  # to the policy service
    assert not asyncpg_instrumented()
    assert tracing.OFF.server_interceptors() == []
    assert tracing.OFF.client_interceptors() == []
    assert tracing.OFF.observers() == ()
    with tracing.span("nothing") as span:
        assert span is None
        assert tracing.current_ids() is None


async def test_untraced_servers_log_no_trace_id_and_record_the_callers_on_the_row(
    services: Services,
    exporter: InMemorySpanExporter,
    new_workspace: NewWorkspace,
    dev_secrets: Secrets,
) -> None:
    workspace = await new_workspace()
    config = ClientConfig(target=services.actions, token=dev_secrets.user_token("bob"))
    async with AsyncActionsClient(config) as client:
        with json_log_lines() as lines:
            with trace.get_tracer("test").start_as_current_span("parent") as parent:
                action = await client.execute(
                    workspace_id=str(workspace.id),
                    scope="agent",
                    target_id="eng-code-1",
                    reason="nobody traces this",
                    params=PauseAgent(duration_minutes=30),
                )
            written = lines()

    # The client did send the trace context (its span is there, the parent's child)...
    trace_id = parent.get_span_context().trace_id
    ours = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    assert {(s.name, s.kind) for s in ours} >= {(EXECUTE, SpanKind.CLIENT)}
    # ...and the services made nothing of it.
    assert not [s.name for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    mine = [line for line in written if line.get("action_id") == action.action_id]
    mine += [line for line in written if line.get("method") == EXECUTE]
    assert len(mine) >= 2
    assert not [line for line in written if "trace_id" in line or "span_id" in line]
    # The audit row still names the caller's trace (its client span is in it).
    assert action.trace_id == hex_id(trace_id)
