"""Rollback (docs/architecture.md §5.5): restores, links, refusals, supersession, races."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from tests.actions.helpers import STATUS, Api, Details, agent_states, counts, details, result
from tests.conftest import NewWorkspace


async def _refused(api: Api, who: str, ws: uuid.UUID, action_id: str, **kw: Any) -> Details:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.rollback(who, ws, action_id, **kw)
    return details(err.value)


async def test_rollback_restores_and_links_both_ways(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    await api.execute("bob", ws.id, "pause_agent", target="eng-code-2", indefinite=True)
    dept = await api.execute("bob", ws.id, "pause_agent", scope="department", target="engineering")
    undo = await api.rollback("bob", ws.id, dept.action_id)
    assert undo.status == STATUS.ACTION_STATUS_COMPLETED
    assert undo.action_type == "rollback"
    assert undo.rollback_of_action_id == dept.action_id
    assert not undo.can_rollback
    assert {a["agent_id"] for a in result(undo)["agents"]} == {"eng-code-1", "eng-code-3"}
    states = await agent_states(pool, ws.id)
    # eng-code-2 was paused before and was skipped by the department pause: still paused.
    assert {a for a, s in states.items() if s == "paused"} == {"eng-code-2"}
    original = await api.stub.GetAction(
        actions_pb2.GetActionRequest(workspace_id=str(ws.id), action_id=dept.action_id),
        metadata=api.auth("carol"),
    )
    assert original.status == STATUS.ACTION_STATUS_ROLLED_BACK
    assert original.rollback_action_id == undo.action_id
    assert original.HasField("rolled_back_at")
    events = await pool.fetch(
        "SELECT event_type, action_id::text FROM action_events WHERE workspace_id = $1 "
        "ORDER BY seq DESC LIMIT 3",
        ws.id,
    )
    assert [(e["event_type"], e["action_id"]) for e in reversed(events)] == [
        ("action.in_progress", undo.action_id),
        ("action.rolled_back", dept.action_id),
        ("action.completed", undo.action_id),
    ]


async def test_rollback_of_a_budget_restores_the_previous_one(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    await api.execute("dana", ws.id, "set_budget", scope="fleet", monthly_limit_cents=500)
    change = await api.execute("dana", ws.id, "set_budget", scope="fleet", monthly_limit_cents=900)
    await api.rollback("alice", ws.id, change.action_id)
    limit = await pool.fetchval(
        "SELECT monthly_limit_cents FROM budgets WHERE workspace_id = $1 AND scope = 'fleet'",
        ws.id,
    )
    assert limit == 500
    first_ever = await api.execute(
        "dana", ws.id, "set_budget", scope="agent", target="sup-chat-1", monthly_limit_cents=7
    )
    await api.rollback("alice", ws.id, first_ever.action_id)
    own = await pool.fetchval(
        "SELECT monthly_limit_cents FROM budgets WHERE workspace_id = $1 AND scope = 'agent'",
        ws.id,
    )
    assert own is None


async def test_every_refusal_writes_nothing(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    restart = await api.execute("alice", ws.id, "restart_agent", target="eng-code-1")
    pause = await api.execute("bob", ws.id, "pause_agent", target="eng-code-2")
    undo = await api.rollback("bob", ws.id, pause.action_id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("carol", ws.id, "pause_agent", target="eng-code-3")
    denied_id = await pool.fetchval(
        "SELECT action_id::text FROM action_audit_log WHERE workspace_id = $1 "
        "AND status = 'denied'",
        ws.id,
    )
    before = await counts(pool, ws.id)
    cases = [
        (restart.action_id, "NOT_ROLLBACKABLE"),
        (undo.action_id, "NOT_ROLLBACKABLE"),
        (pause.action_id, "ALREADY_ROLLED_BACK"),
        (denied_id, "NOT_COMPLETED"),
    ]
    for action_id, reason in cases:
        d = await _refused(api, "alice", ws.id, action_id)
        assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, reason)
    assert await counts(pool, ws.id) == before
    d = await _refused(api, "alice", ws.id, str(uuid.uuid4()))
    assert d.code == grpc.StatusCode.NOT_FOUND
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_rollback_needs_rollback_and_the_original_permission(
    api: Api, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    budget = await api.execute("dana", ws.id, "set_budget", scope="fleet", monthly_limit_cents=1)
    d = await _refused(api, "carol", ws.id, pause.action_id)
    assert d.metadata["required_permission"] == "actions:rollback"
    d = await _refused(api, "bob", ws.id, budget.action_id)
    assert d.code == grpc.StatusCode.PERMISSION_DENIED
    assert d.metadata["required_permission"] == "actions:set_budget"


async def test_superseded_rollback_fails_and_changes_nothing(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    dept = await api.execute("bob", ws.id, "pause_agent", scope="department", target="support")
    later = await api.execute("bob", ws.id, "resume_agent", target="sup-chat-2")
    states = await agent_states(pool, ws.id)
    d = await _refused(api, "bob", ws.id, dept.action_id, request_id="undo-1")
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SUPERSEDED")
    assert ("SUPERSEDED", later.action_id) in d.preconditions
    assert await agent_states(pool, ws.id) == states
    rows = await pool.fetch(
        "SELECT status FROM action_audit_log WHERE rollback_of_action_id = $1",
        uuid.UUID(dept.action_id),
    )
    assert [r["status"] for r in rows] == ["failed"]
    original = await pool.fetchval(
        "SELECT status FROM action_audit_log WHERE action_id = $1", uuid.UUID(dept.action_id)
    )
    assert original == "completed"
    # The same request again replays the same refusal.
    again = await _refused(api, "bob", ws.id, dept.action_id, request_id="undo-1")
    assert again.reason == "SUPERSEDED"


async def test_skip_superseded_rolls_back_the_rest(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    dept = await api.execute("bob", ws.id, "pause_agent", scope="department", target="support")
    later = await api.execute("bob", ws.id, "pause_agent", target="sup-chat-2", indefinite=True)
    undo = await api.rollback("bob", ws.id, dept.action_id, skip_superseded=True)
    assert undo.status == STATUS.ACTION_STATUS_COMPLETED
    assert [s["superseded_by"] for s in result(undo)["skipped"]] == [later.action_id]
    assert "sup-chat-2" in result(undo)["skipped"][0]["target"]
    states = await agent_states(pool, ws.id)
    assert {a for a, s in states.items() if s == "paused"} == {"sup-chat-2"}


async def test_two_concurrent_rollbacks_exactly_one_wins(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = await api.execute("bob", ws.id, "pause_agent", scope="department", target="support")
    outcomes = await asyncio.gather(
        *(api.rollback(who, ws.id, pause.action_id) for who in ("alice", "bob", "alice", "bob")),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(winners) == 1
    for o in outcomes:
        if isinstance(o, BaseException):
            assert isinstance(o, grpc.aio.AioRpcError)
            assert details(o).reason == "ALREADY_ROLLED_BACK"
    assert set((await agent_states(pool, ws.id)).values()) == {"active"}
    completed = await pool.fetchval(
        "SELECT count(*) FROM action_audit_log WHERE rollback_of_action_id = $1 "
        "AND status = 'completed'",
        uuid.UUID(pause.action_id),
    )
    assert completed == 1


async def test_rollback_is_idempotent_on_its_request_id(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    first = await api.rollback("bob", ws.id, pause.action_id, request_id="undo")
    again = await api.rollback("bob", ws.id, pause.action_id, request_id="undo")
    assert again.action_id == first.action_id
    assert again.status == first.status


async def test_rollback_never_revives_a_retired_agent(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = await api.execute("bob", ws.id, "pause_agent", scope="department", target="support")
    await pool.execute(  # what import-agents --prune does to an agent gone from the inventory
        "UPDATE agents SET status = 'retired', paused_until = NULL "
        "WHERE workspace_id = $1 AND agent_id = 'sup-chat-3'",
        ws.id,
    )
    d = await _refused(api, "bob", ws.id, pause.action_id)
    assert (d.reason, d.preconditions) == ("SUPERSEDED", [("SUPERSEDED", "retired")])
    undo = await api.rollback("bob", ws.id, pause.action_id, skip_superseded=True)
    assert [s["target"] for s in result(undo)["skipped"]] == ["agent/sup-chat-3"]
    states = await agent_states(pool, ws.id)
    assert states["sup-chat-3"] == "retired"
    assert states["sup-chat-1"] == states["sup-chat-2"] == "active"


async def test_invalid_rollback_request_names_the_fields(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    before = await counts(pool, ws.id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.Rollback(
            actions_pb2.RollbackRequest(
                workspace_id=str(ws.id), action_id="42", reason="", request_id="bad id"
            ),
            metadata=api.auth("alice"),
        )
    d = details(err.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(d.field_violations) == {"action_id", "reason", "request_id"}
    assert await counts(pool, ws.id) == before
