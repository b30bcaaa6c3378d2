"""Seed checklist: success recorded in SQL, permission denied with detail."""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest

from tests.actions.helpers import STATUS, Api, details
from tests.conftest import NewWorkspace


async def test_bob_pauses_an_agent_and_the_audit_row_says_so(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    action = await api.execute(
        "bob", ws.id, "pause_agent", target="eng-code-1", duration_minutes=15
    )
    assert action.status == STATUS.ACTION_STATUS_COMPLETED
    row = await pool.fetchrow(
        "SELECT * FROM action_audit_log WHERE action_id = $1", action.action_id
    )
    assert row is not None
    assert row["status"] == "completed"
    assert row["actor_user_id"] == "bob"
    assert "operator" in row["actor_role"].split(",")
    assert row["policy_version"]
    assert row["decision_id"]
    assert json.loads(row["action_params"]) == {"duration_minutes": 15}
    agent = await pool.fetchrow(
        "SELECT * FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-1'", ws.id
    )
    assert agent is not None
    assert agent["status"] == "paused"
    assert str(agent["last_action_id"]) == action.action_id
    events = await pool.fetch(
        "SELECT event_type FROM action_events WHERE action_id = $1 ORDER BY seq",
        action.action_id,
    )
    assert [e["event_type"] for e in events] == [
        "action.pending",
        "action.in_progress",
        "action.completed",
    ]


async def test_carol_is_refused_with_detail(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("carol", ws.id, "pause_agent", target="eng-code-1")
    d = details(err.value)
    assert d.code == grpc.StatusCode.PERMISSION_DENIED
    assert d.reason == "INSUFFICIENT_PERMISSIONS"
    assert d.metadata["required_permission"] == "actions:pause_agent"
    assert d.metadata["user_role"] == "viewer"
    assert d.metadata["policy_version"]
