"""Every action type at every scope it allows, with its edge semantics (docs/architecture.md §2)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from tests.actions.helpers import STATUS, Api, agent_states, counts, details, result
from tests.conftest import NewWorkspace

PAUSE_TARGETS = [
    ("bob", "agent", "eng-code-1", {"eng-code-1"}),
    ("bob", "department", "support", {"sup-chat-1", "sup-chat-2", "sup-chat-3"}),
    (
        "alice",
        "fleet",
        "",
        {"eng-code-1", "eng-code-2", "eng-code-3", "sup-chat-1", "sup-chat-2", "sup-chat-3"},
    ),
]


@pytest.mark.parametrize(("who", "scope", "target", "expected"), PAUSE_TARGETS)
async def test_pause_then_resume_at_every_scope(
    who: str,
    scope: str,
    target: str,
    expected: set[str],
    api: Api,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
) -> None:
    ws = await new_workspace()
    paused = await api.execute(who, ws.id, "pause_agent", scope=scope, target=target)
    assert paused.status == STATUS.ACTION_STATUS_COMPLETED
    assert paused.can_rollback
    states = await agent_states(pool, ws.id)
    assert {a for a, s in states.items() if s == "paused"} == expected
    assert int(result(paused)["count"]) == len(expected)
    assert {a["agent_id"] for a in result(paused)["agents"]} == expected
    assert all(a["previous_status"] == "active" for a in result(paused)["agents"])
    assert all(a["resume_at"] for a in result(paused)["agents"])
    n_targets = await pool.fetchval(
        "SELECT count(*) FROM action_targets WHERE action_id = $1", paused.action_id
    )
    assert n_targets == len(expected)

    resumed = await api.execute(who, ws.id, "resume_agent", scope=scope, target=target)
    assert resumed.status == STATUS.ACTION_STATUS_COMPLETED
    assert int(result(resumed)["count"]) == len(expected)
    assert set((await agent_states(pool, ws.id)).values()) == {"active"}
    paused_until = await pool.fetchval(
        "SELECT count(*) FROM agents WHERE workspace_id = $1 AND paused_until IS NOT NULL", ws.id
    )
    assert paused_until == 0


async def test_department_pause_touches_only_that_department(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    await api.execute("bob", ws.id, "pause_agent", scope="department", target="engineering")
    states = await agent_states(pool, ws.id)
    assert {a for a, s in states.items() if s == "paused"} == set(ws.agents_in("engineering"))
    untouched = await pool.fetchval(
        "SELECT count(*) FROM agents WHERE workspace_id = $1 AND department_id = 'support' "
        "AND last_action_id IS NULL",
        ws.id,
    )
    assert untouched == len(ws.agents_in("support"))


async def test_department_pause_skips_paused_agents_and_agent_pause_extends(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    first = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", indefinite=True)
    dept = await api.execute("bob", ws.id, "pause_agent", scope="department", target="engineering")
    assert {a["agent_id"] for a in result(dept)["agents"]} == {"eng-code-2", "eng-code-3"}
    owner = await pool.fetchval(
        "SELECT last_action_id::text FROM agents WHERE workspace_id = $1 "
        "AND agent_id = 'eng-code-1'",
        ws.id,
    )
    assert owner == first.action_id
    until = await pool.fetchval(
        "SELECT paused_until FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-1'",
        ws.id,
    )
    assert until is None  # indefinite

    # An indefinite pause is never shortened by another pause (that is a resume).
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", duration_minutes=120)
    assert details(err.value).reason == "ALREADY_IN_STATE"
    # A timed pause (the department's 30 minutes) is extended by a later one.
    again = await api.execute(
        "bob", ws.id, "pause_agent", target="eng-code-2", duration_minutes=120
    )
    assert result(again)["agents"][0]["previous_status"] == "paused"
    until = await pool.fetchval(
        "SELECT paused_until FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-2'",
        ws.id,
    )
    assert until is not None
    assert timedelta(minutes=110) < until - datetime.now(UTC) <= timedelta(minutes=120)


async def test_resume_of_an_active_agent_is_already_in_state_and_not_recorded(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    before = await counts(pool, ws.id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("bob", ws.id, "resume_agent", target="eng-code-1")
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_IN_STATE")
    assert await counts(pool, ws.id) == before


@pytest.mark.parametrize(
    ("scope", "target"), [("agent", "sup-chat-2"), ("department", "support"), ("fleet", "")]
)
async def test_set_and_clear_budget_at_every_scope(
    scope: str, target: str, api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    done = await api.execute(
        "dana", ws.id, "set_budget", scope=scope, target=target, monthly_limit_cents=12345
    )
    assert done.status == STATUS.ACTION_STATUS_COMPLETED
    limit = await pool.fetchval(
        "SELECT monthly_limit_cents FROM budgets WHERE workspace_id = $1 AND scope = $2 "
        "AND target_id = $3",
        ws.id,
        scope,
        target,
    )
    assert limit == 12345
    agent = await api.stub.GetAgent(
        actions_pb2.GetAgentRequest(workspace_id=str(ws.id), agent_id="sup-chat-2"),
        metadata=api.auth("dana"),
    )
    assert agent.effective_budget_cents == 12345
    assert agent.HasField("monthly_budget_cents") == (scope == "agent")

    cleared = await api.execute("dana", ws.id, "set_budget", scope=scope, target=target, clear=True)
    assert json.loads(
        await pool.fetchval(
            "SELECT action_params FROM action_audit_log WHERE action_id = $1", cleared.action_id
        )
    ) == {"clear": True}
    agent = await api.stub.GetAgent(
        actions_pb2.GetAgentRequest(workspace_id=str(ws.id), agent_id="sup-chat-2"),
        metadata=api.auth("dana"),
    )
    assert not agent.HasField("effective_budget_cents")


async def test_effective_budget_is_the_most_specific(api: Api, new_workspace: NewWorkspace) -> None:
    ws = await new_workspace()
    await api.execute("dana", ws.id, "set_budget", scope="fleet", monthly_limit_cents=300)
    await api.execute(
        "dana", ws.id, "set_budget", scope="department", target="support", monthly_limit_cents=200
    )
    await api.execute(
        "dana", ws.id, "set_budget", scope="agent", target="sup-chat-1", monthly_limit_cents=100
    )
    page = await api.stub.ListAgents(
        actions_pb2.ListAgentsRequest(workspace_id=str(ws.id)), metadata=api.auth("carol")
    )
    effective = {a.agent_id: a.effective_budget_cents for a in page.agents}
    assert effective == {
        "eng-code-1": 300,
        "eng-code-2": 300,
        "eng-code-3": 300,
        "sup-chat-1": 100,
        "sup-chat-2": 200,
        "sup-chat-3": 200,
    }


async def test_restart_bumps_generation_and_cannot_be_rolled_back(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    done = await api.execute("alice", ws.id, "restart_agent", target="eng-code-2")
    assert done.status == STATUS.ACTION_STATUS_COMPLETED
    assert not done.can_rollback
    row = await pool.fetchrow(
        "SELECT generation, restart_requested_at FROM agents WHERE workspace_id = $1 "
        "AND agent_id = 'eng-code-2'",
        ws.id,
    )
    assert row is not None
    assert row["generation"] == 1
    assert row["restart_requested_at"] is not None


async def test_operator_may_not_pause_the_fleet_or_restart(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    for action, scope, target in (
        ("pause_agent", "fleet", ""),
        ("restart_agent", "agent", "eng-code-1"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute("bob", ws.id, action, scope=scope, target=target)
        d = details(err.value)
        assert d.code == grpc.StatusCode.PERMISSION_DENIED
        assert d.metadata["required_permission"] == f"actions:{action}"
    denied = await pool.fetch(
        "SELECT status, actor_role, error_details FROM action_audit_log WHERE workspace_id = $1",
        ws.id,
    )
    assert [r["status"] for r in denied] == ["denied", "denied"]
    assert set((await agent_states(pool, ws.id)).values()) == {"active"}


async def test_retired_agents_are_not_touched(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    await pool.execute(
        "UPDATE agents SET status = 'retired' WHERE workspace_id = $1 AND agent_id = 'eng-code-1'",
        ws.id,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    assert details(err.value).reason == "ALREADY_IN_STATE"
    dept = await api.execute("bob", ws.id, "pause_agent", scope="department", target="engineering")
    assert {a["agent_id"] for a in result(dept)["agents"]} == {"eng-code-2", "eng-code-3"}


async def test_result_lists_at_most_100_agents_and_targets_hold_all(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace(agents_per_department=60)
    done = await api.execute("alice", ws.id, "pause_agent", scope="fleet", indefinite=True)
    body = result(done)
    assert (body["count"], len(body["agents"]), body["truncated"]) == (120, 100, True)
    stored = await pool.fetchval(
        "SELECT count(*) FROM action_targets WHERE action_id = $1", uuid.UUID(done.action_id)
    )
    assert stored == 120
    undo = await api.rollback("alice", ws.id, done.action_id)
    assert result(undo)["count"] == 120
    assert set((await agent_states(pool, ws.id)).values()) == {"active"}
