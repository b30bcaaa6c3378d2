"""The error rows of docs/architecture.md §4 that Execute can produce, each with its rich status."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc

from services.dev.processes import free_port
from tests.actions.helpers import Api, agent_states, counts, details, execute_request
from tests.conftest import NewWorkspace, Secrets
from tests.servers import running_action_server, running_policy_server, write_test_policy

INVALID = [
    ({"workspace": "not-a-uuid"}, "workspace_id"),
    ({"scope_value": actions_pb2.SCOPE_UNSPECIFIED}, "scope"),
    ({"target": "../etc"}, "target_id"),
    ({"target": "Eng-Code-1"}, "target_id"),
    ({"target": "a*"}, "target_id"),
    ({"scope": "fleet", "target": "eng-code-1"}, "target_id"),
    ({"reason": "no"}, "reason"),
    ({"reason": "x" * 1001}, "reason"),
    ({"request_id": "has space"}, "request_id"),
    ({"request_id": "r" * 129}, "request_id"),
    # A trailing newline must not slip past the id patterns (regression: `$` matched "\n").
    ({"target": "eng-code-1\n"}, "target_id"),
    ({"request_id": "req-1\n"}, "request_id"),
    ({"action": ""}, "params"),
    ({"params": {"duration_minutes": 0}}, "pause_agent.duration_minutes"),
    ({"params": {"duration_minutes": 10081}}, "pause_agent.duration_minutes"),
    ({"params": {"duration_minutes": 5, "indefinite": True}}, "pause_agent.indefinite"),
    ({"action": "set_budget", "params": {}}, "set_budget"),
    (
        {"action": "set_budget", "params": {"monthly_limit_cents": 5, "clear": True}},
        "set_budget",
    ),
    (
        {"action": "set_budget", "params": {"monthly_limit_cents": 10**12 + 1}},
        "set_budget.monthly_limit_cents",
    ),
    (
        {"action": "set_budget", "params": {"monthly_limit_cents": -1}},
        "set_budget.monthly_limit_cents",
    ),
    ({"action": "restart_agent", "scope": "department", "target": "engineering"}, "scope"),
]


@pytest.mark.parametrize(("change", "field"), INVALID)
async def test_invalid_request_names_the_field_and_writes_nothing(
    change: dict[str, object],
    field: str,
    api: Api,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
) -> None:
    ws = await new_workspace()
    before = await counts(pool, ws.id)
    request = execute_request(
        str(change.get("workspace", ws.id)),
        str(change.get("action", "pause_agent")),
        scope=str(change.get("scope", "agent")),
        target=str(change.get("target", "eng-code-1")),
        reason=str(change.get("reason", "a good reason")),
        request_id=str(change.get("request_id", uuid.uuid4().hex)),
        **change.get("params", {}),  # type: ignore[arg-type]
    )
    if "scope_value" in change:
        request.scope = change["scope_value"]  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.Execute(request, metadata=api.auth("alice"), timeout=5)
    d = details(err.value)
    assert (d.code, d.reason, d.error_infos) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        1,
    )
    assert field in d.field_violations, d.field_violations
    assert await counts(pool, ws.id) == before


async def test_unknown_target_is_not_found_for_a_reader(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    for scope, target in (("agent", "eng-code-99"), ("department", "sales")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute("carol", ws.id, "pause_agent", scope=scope, target=target)
        d = details(err.value)
        assert (d.code, d.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    assert (await counts(pool, ws.id))["actions"] == 0


@pytest.mark.parametrize("target", ["eng-code-1", "eng-code-99"])
async def test_cross_workspace_access_is_denied_whether_or_not_ids_exist(
    target: str, api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace, erin_home: uuid.UUID
) -> None:
    # erin's own workspace works...
    own = await api.execute("erin", erin_home, "resume_agent", scope="department", target="support")
    assert own.actor.roles
    # ...another tenant's, existing or not, is refused and nothing is written there.
    other = await new_workspace()
    before = await counts(pool, other.id)
    for workspace in (other.id, uuid.uuid4()):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute("erin", workspace, "pause_agent", target=target)
        d = details(err.value)
        assert (d.code, d.reason) == (grpc.StatusCode.PERMISSION_DENIED, "INSUFFICIENT_PERMISSIONS")
        assert d.metadata["user_role"] == ""
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.stub.ListActions(
                actions_pb2.ListActionsRequest(workspace_id=str(workspace)),
                metadata=api.auth("erin"),
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await counts(pool, other.id) == before


async def test_message_over_one_mebibyte_is_resource_exhausted(
    api: Api, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", reason="x" * 1_100_000)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_expired_deadline_starts_nothing(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", deadline=0.000001)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The absence is the point, and there is no event to wait on (the call may never have
    # reached the server): a bounded wait, long enough for a started action's pending row.
    await asyncio.sleep(0.2)
    assert (await counts(pool, ws.id))["actions"] == 0


async def test_failure_inside_the_action_is_recorded_and_replayed(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    request_id = uuid.uuid4().hex
    async with pool.acquire() as blocker, blocker.transaction():
        # Someone else holds the agent row: the action's lock wait times out inside it.
        await blocker.execute(
            "SELECT 1 FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-1' FOR UPDATE",
            ws.id,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute(
                "bob", ws.id, "pause_agent", target="eng-code-1", request_id=request_id, deadline=2
            )
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.INTERNAL, "ACTION_EXECUTION_FAILED")
    row = await pool.fetchrow(
        "SELECT status, error_message FROM action_audit_log WHERE action_id = $1",
        uuid.UUID(d.metadata["action_id"]),
    )
    assert row is not None
    assert row["status"] == "failed"
    assert row["error_message"]
    assert (await agent_states(pool, ws.id))["eng-code-1"] == "active"
    events = await pool.fetch(
        "SELECT event_type FROM action_events WHERE action_id = $1 ORDER BY seq",
        uuid.UUID(d.metadata["action_id"]),
    )
    assert [e["event_type"] for e in events] == ["action.pending", "action.failed"]
    # The repeat gets the original error back and acts no second time.
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", request_id=request_id)
    d2 = details(again.value)
    assert (d2.code, d2.reason, d2.metadata) == (d.code, d.reason, d.metadata)
    assert (await counts(pool, ws.id))["actions"] == 1


async def test_policy_service_down_is_unavailable_and_writes_nothing(
    database_dsn: str, dev_secrets: Secrets, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    async with (
        running_action_server(database_dsn, f"127.0.0.1:{free_port()}", dev_secrets) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        api = Api(channel, dev_secrets)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "POLICY_UNAVAILABLE")
    assert (await counts(pool, ws.id))["actions"] == 0


async def test_policy_service_not_serving_is_unavailable(
    tmp_path: Path,
    database_dsn: str,
    dev_secrets: Secrets,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
) -> None:
    broken = write_test_policy(tmp_path / "broken")
    (broken / "policy.csv").write_text("p, viewer\nthis is not a policy line\n")
    ws = await new_workspace()
    async with (
        running_policy_server(broken, dev_secrets, expect_loaded=False) as policy,
        running_action_server(database_dsn, policy, dev_secrets) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        api = Api(channel, dev_secrets)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "POLICY_UNAVAILABLE")
    assert (await counts(pool, ws.id))["actions"] == 0


async def test_database_unreachable_is_unavailable(
    policy_target: str, dev_secrets: Secrets
) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    async with (
        running_action_server(dsn, policy_target, dev_secrets) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        api = Api(channel, dev_secrets)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute("bob", uuid.uuid4(), "pause_agent", target="eng-code-1")
        reads = actions_pb2_grpc.ActionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as read_err:
            await reads.GetAgent(
                actions_pb2.GetAgentRequest(workspace_id=str(uuid.uuid4()), agent_id="a"),
                metadata=api.auth("bob"),
            )
    for exc in (err.value, read_err.value):
        d = details(exc)
        assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")


async def test_policy_that_never_answers_is_unavailable_within_the_budget(
    database_dsn: str, dev_secrets: Secrets, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    held: list[asyncio.StreamWriter] = []

    async def black_hole(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept the connection, never answer (a hung policy host)

    hole = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    try:
        async with (
            running_action_server(database_dsn, f"127.0.0.1:{port}", dev_secrets) as target,
            grpc.aio.insecure_channel(target) as channel,
        ):
            api = Api(channel, dev_secrets)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", deadline=5)
    finally:
        for writer in held:
            writer.close()
        hole.close()
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "POLICY_UNAVAILABLE")
    assert (await counts(pool, ws.id))["actions"] == 0
