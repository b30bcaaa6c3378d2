"""A connection lost after the server acted: the retry returns the same action, one effect."""

from __future__ import annotations

import asyncpg
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.client import PauseAgent

from tests.client.proxy import CuttingProxy
from tests.client.servers import actions_client
from tests.conftest import NewWorkspace, Secrets


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_execute_survives_a_cut_connection_and_acts_once(
    client_action_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
    sync: bool,
) -> None:
    ws = await new_workspace()
    proxy = CuttingProxy(client_action_target)
    async with proxy.running() as target:
        client = actions_client(target, dev_secrets.user_token("bob"), sync=sync)
        try:
            await client.call("list_action_types")  # the connection is up before arming
            proxy.armed = True
            action = await client.call(
                "execute",
                workspace_id=str(ws.id),
                scope="agent",
                target_id="eng-code-1",
                reason="cut me off",
                params=PauseAgent(duration_minutes=15),
            )
        finally:
            await client.close()

    assert proxy.cuts == 1
    assert proxy.connections >= 2
    assert action.status == actions_pb2.ACTION_STATUS_COMPLETED
    rows = await pool.fetch(
        "SELECT action_id::text AS action_id, request_id FROM action_audit_log "
        "WHERE workspace_id = $1",
        ws.id,
    )
    assert [(r["action_id"], r["request_id"]) for r in rows] == [
        (action.action_id, action.request_id)
    ]
    agent = await pool.fetchrow(
        "SELECT status, last_action_id::text AS last FROM agents "
        "WHERE workspace_id = $1 AND agent_id = 'eng-code-1'",
        ws.id,
    )
    assert agent is not None
    assert (agent["status"], agent["last"]) == ("paused", action.action_id)
