"""Tracing on: one Execute from the client library is one connected trace through both
services and PostgreSQL, and the log lines written meanwhile name it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from fleetward.client import (
    ActionsClient,
    AsyncActionsClient,
    ClientConfig,
    PauseAgent,
    PermissionDenied,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.common.tracing import Tracing
from services.policy import decision_log
from tests.conftest import NewWorkspace, Secrets, Workspace
from tests.servers import running_action_server, running_policy_server
from tests.tracing.conftest import (
    Services,
    asyncpg_instrumented,
    hex_id,
    json_log_lines,
    spy,
    trace_spans,
)

EXECUTE = "/fleetward.actions.v1.ActionService/Execute"
CHECK = "/fleetward.policy.v1.PolicyService/Check"
REASON = "tracing the runaway spend"


def _pause(workspace: Workspace, reason: str = REASON) -> dict[str, object]:
    return {
        "workspace_id": str(workspace.id),
        "scope": "agent",
        "target_id": "eng-code-1",
        "reason": reason,
        "params": PauseAgent(duration_minutes=30),
    }


def _complete(spans: Sequence[ReadableSpan]) -> bool:
    names = {(s.name, s.kind) for s in spans}
    return {("parent", SpanKind.INTERNAL), (EXECUTE, SpanKind.CLIENT)} <= names


def _one(spans: Sequence[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def _parent(spans: Sequence[ReadableSpan], span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None, span.name
    by_id = {s.context.span_id: s for s in spans}
    return by_id[span.parent.span_id]


def _is_database(span: ReadableSpan) -> bool:
    return (span.attributes or {}).get("db.system") == "postgresql"


def _assert_connected(spans: Sequence[ReadableSpan]) -> None:
    """One root (the test's parent span); every other span's parent is in the trace."""
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == ["parent"]
    orphans = [s.name for s in spans if s.parent is not None and s.parent.span_id not in ids]
    assert orphans == []


async def test_one_execute_is_one_connected_trace(
    services: Services,
    exporter: InMemorySpanExporter,
    new_workspace: NewWorkspace,
    dev_secrets: Secrets,
) -> None:
    workspace = await new_workspace()
    config = ClientConfig(target=services.actions, token=dev_secrets.user_token("bob"))
    async with AsyncActionsClient(config) as client:
        with trace.get_tracer("test").start_as_current_span("parent") as parent:
            action = await client.execute(**_pause(workspace))  # type: ignore[arg-type]
        recorded = await client.get_action(
            workspace_id=str(workspace.id), action_id=action.action_id
        )
    spans = await trace_spans(exporter, parent.get_span_context().trace_id, _complete)

    # The audit row names the trace, so an auditor goes from the row to these spans.
    assert action.trace_id == recorded.trace_id == hex_id(parent.get_span_context().trace_id)
    _assert_connected(spans)
    call = _one(spans, EXECUTE, SpanKind.CLIENT)  # fleetward.client's interceptor
    served = _one(spans, EXECUTE, SpanKind.SERVER)  # the action service's
    question = _one(spans, "policy.check", SpanKind.INTERNAL)
    check_call = _one(spans, CHECK, SpanKind.CLIENT)  # the action service's policy channel
    check_served = _one(spans, CHECK, SpanKind.SERVER)  # the policy service's
    effect = _one(spans, "action.effect", SpanKind.INTERNAL)
    assert _parent(spans, call).name == "parent"
    assert _parent(spans, served) is call
    assert _parent(spans, question) is served
    assert _parent(spans, check_call) is question
    assert _parent(spans, check_served) is check_call
    assert _parent(spans, effect) is served

    database = [s for s in spans if _is_database(s)]
    assert all(s.kind == SpanKind.CLIENT for s in database)
    # The keyed lookup, BEGIN, the effect's two, the record (row, targets, events), COMMIT:
    # one transaction (docs/architecture.md §5.2).
    assert [s.name for s in database] == [
        "SELECT",
        "BEGIN;",
        "SELECT",
        "UPDATE",
        "SELECT",
        "COMMIT",
    ]
    in_effect = [s for s in database if _parent(spans, s) is effect]
    assert {s.name for s in in_effect} == {"SELECT", "UPDATE"}
    assert {_parent(spans, s).name for s in database} == {EXECUTE, "action.effect"}

    question_attributes = question.attributes or {}
    assert question_attributes["fleetward.allowed"] == 1
    assert question_attributes["fleetward.permissions"] == ("actions:pause_agent",)
    effect_attributes = effect.attributes or {}
    assert effect_attributes["fleetward.action_type"] == "pause_agent"
    assert effect_attributes["fleetward.workspace_id"] == str(workspace.id)
    assert effect_attributes["fleetward.changes"] == 1
    assert (served.attributes or {})["rpc.grpc.status_code"] == 0


async def test_the_blocking_client_joins_the_trace_too(
    services: Services,
    exporter: InMemorySpanExporter,
    new_workspace: NewWorkspace,
    dev_secrets: Secrets,
) -> None:
    workspace = await new_workspace()
    config = ClientConfig(target=services.actions, token=dev_secrets.user_token("bob"))

    def pause() -> None:
        with ActionsClient(config) as client:
            client.execute(**_pause(workspace))  # type: ignore[arg-type]

    with trace.get_tracer("test").start_as_current_span("parent") as parent:
        await asyncio.to_thread(pause)  # the context (the parent span) goes with it
    spans = await trace_spans(exporter, parent.get_span_context().trace_id, _complete)

    _assert_connected(spans)
    call = _one(spans, EXECUTE, SpanKind.CLIENT)
    assert _parent(spans, _one(spans, EXECUTE, SpanKind.SERVER)) is call
    assert _parent(spans, call).name == "parent"
    assert any(s.name == "action.effect" for s in spans)


async def test_log_lines_written_during_the_rpc_carry_its_trace_id(
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
                action = await client.execute(**_pause(workspace))  # type: ignore[arg-type]
            logging.getLogger("fleetward.test").info("no span is current here")
            written = lines()
    trace_id = parent.get_span_context().trace_id
    spans = await trace_spans(exporter, trace_id, _complete)
    served = _one(spans, EXECUTE, SpanKind.SERVER)

    access = [line for line in written if line.get("method") == EXECUTE]
    completed = [line for line in written if line.get("action_id") == action.action_id]
    assert len(access) == 1
    assert completed
    for line in [*access, *completed]:
        assert line["trace_id"] == hex_id(trace_id)
        assert line["span_id"] == format(served.context.span_id, "016x")
    outside = [line for line in written if line["logger"] == "fleetward.test"]
    assert len(outside) == 1
    assert "trace_id" not in outside[0]
    assert "span_id" not in outside[0]


async def test_the_policy_decision_log_names_the_trace_of_each_decision(
    services: Services,
    exporter: InMemorySpanExporter,
    new_workspace: NewWorkspace,
    dev_secrets: Secrets,
    tmp_path: Path,
) -> None:
    workspace = await new_workspace()
    sink = tmp_path / "decisions.jsonl"
    decision_log.configure(str(sink))
    try:
        config = ClientConfig(target=services.actions, token=dev_secrets.user_token("bob"))
        async with AsyncActionsClient(config) as client:
            with trace.get_tracer("test").start_as_current_span("parent") as parent:
                action = await client.execute(**_pause(workspace))  # type: ignore[arg-type]
                await client.execute(
                    **{
                        **_pause(workspace),
                        "scope": "department",  # type: ignore[arg-type]
                        "target_id": "engineering",
                    }
                )
            assert decision_log.flush()
    finally:
        decision_log.configure("off")
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    ours = [line for line in lines if line["workspace"] == str(workspace.id)]
    # The pause's Check and the department pause's Check and CheckResources (its agents).
    assert {line["decision_id"] for line in ours} >= {action.decision_id}
    assert any("resources" in line for line in ours), ours
    assert {line.get("trace_id") for line in ours} == {hex_id(parent.get_span_context().trace_id)}


async def test_spans_carry_neither_the_token_nor_the_reason(
    services: Services,
    exporter: InMemorySpanExporter,
    new_workspace: NewWorkspace,
    dev_secrets: Secrets,
) -> None:
    workspace = await new_workspace()
    token = dev_secrets.user_token("bob")
    reason = "a reason nobody should find in a span"
    config = ClientConfig(target=services.actions, token=token)
    async with AsyncActionsClient(config) as client:
        with trace.get_tracer("test").start_as_current_span("parent") as parent:
            await client.execute(**_pause(workspace, reason))  # type: ignore[arg-type]
    spans = await trace_spans(exporter, parent.get_span_context().trace_id, _complete)

    assert len(spans) > 10
    for span in spans:
        text = repr(dict(span.attributes or {})) + repr([e.attributes for e in span.events])
        assert token not in text, span.name
        assert reason not in text, span.name  # statement parameters are not captured


async def test_a_refusal_is_recorded_on_the_server_span_without_marking_it_failed(
    services: Services,
    exporter: InMemorySpanExporter,
    new_workspace: NewWorkspace,
    dev_secrets: Secrets,
) -> None:
    workspace = await new_workspace()
    config = ClientConfig(target=services.actions, token=dev_secrets.user_token("carol"))
    async with AsyncActionsClient(config) as client:
        with (
            trace.get_tracer("test").start_as_current_span("parent") as parent,
            pytest.raises(PermissionDenied),
        ):
            await client.execute(**_pause(workspace))  # type: ignore[arg-type]
    spans = await trace_spans(exporter, parent.get_span_context().trace_id, _complete)

    served = _one(spans, EXECUTE, SpanKind.SERVER)
    code = grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert (served.attributes or {})["rpc.grpc.status_code"] == code
    assert served.status.status_code != StatusCode.ERROR  # a correct answer, not a fault
    assert _one(spans, EXECUTE, SpanKind.CLIENT).status.status_code == StatusCode.ERROR
    assert (_one(spans, "policy.check", SpanKind.INTERNAL).attributes or {})[
        "fleetward.allowed"
    ] == 0
    assert not any(s.name == "action.effect" for s in spans)


async def test_health_checks_get_no_span(
    services: Services, exporter: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(services.actions) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the typeshed stub lists no methods
        reply = await stub.Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert not [s.name for s in exporter.get_finished_spans() if "grpc.health" in s.name]


async def test_traced_servers_install_the_interceptors_and_asyncpg_spans(
    traced: Tracing,
    policy_dir: Path,
    database_dsn: str,
    dev_secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers = spy(monkeypatch, grpc.aio, "server")
    channels = spy(monkeypatch, grpc.aio, "insecure_channel")
    async with (
        running_policy_server(policy_dir, dev_secrets, traced=traced) as policy,
        running_action_server(database_dsn, policy, dev_secrets, traced=traced),
    ):
        pass
    assert [len(call["interceptors"]) for call in servers] == [1, 1]  # policy, actions
    assert len(channels) == 1  # the action service's channel to the policy service
    assert len(channels[0]["interceptors"]) == 4  # unary and stream, requests and responses
    assert asyncpg_instrumented()
