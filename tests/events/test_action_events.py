"""ListActionEvents: one action's events, exactly as WatchActions sends them, by an index."""

from __future__ import annotations

import uuid
from collections import defaultdict

import asyncpg
from fleetward.actions.v1 import actions_pb2

from services.actions.store.events import OF_ACTION
from tests.actions.helpers import Api
from tests.conftest import NewWorkspace
from tests.events.bighistory import append_synthetic_actions
from tests.events.conftest import IsolatedDb
from tests.events.test_watch import head, read_until, watch


async def test_an_actions_events_are_the_ones_watch_actions_sends(
    events_api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = await events_api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    await events_api.execute("bob", ws.id, "pause_agent", scope="department", target="support")
    await events_api.rollback("bob", ws.id, pause.action_id)
    call = watch(events_api, "carol", ws.id)
    streamed = await read_until(call, await head(pool, ws.id))
    call.cancel()
    by_action: dict[str, list[actions_pb2.ActionEvent]] = defaultdict(list)
    for event in streamed:
        by_action[event.action.action_id].append(event)
    assert len(by_action) == 3
    for action_id, events in by_action.items():
        listed = await events_api.stub.ListActionEvents(
            actions_pb2.ListActionEventsRequest(workspace_id=str(ws.id), action_id=action_id),
            metadata=events_api.auth("carol"),
        )
        assert list(listed.events) == events  # every field, byte for byte the same message
    assert [e.event_type for e in by_action[pause.action_id]][-1] == "action.rolled_back"


async def test_the_events_of_one_action_are_read_by_its_index_in_a_long_history(
    isolated_db: IsolatedDb,
) -> None:
    # A prepared statement gets a generic plan after five runs: even that plan must find
    # an action's few events by action_events_by_action, never by walking the workspace's
    # history in seq order (its primary key) or the whole table.
    ws = await isolated_db.new_workspace()
    await append_synthetic_actions(isolated_db.pool, ws, 20_000)
    action_id = await isolated_db.pool.fetchval(
        "SELECT action_id FROM action_events WHERE workspace_id = $1 AND seq = 30000", ws
    )
    async with isolated_db.pool.acquire() as conn:
        await conn.execute("ANALYZE action_events")
        await conn.execute(f"PREPARE action_events_generic AS {OF_ACTION}")
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            rows = await conn.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE action_events_generic('{ws}', '{action_id}')"
            )
        await conn.execute("DEALLOCATE action_events_generic")
    plan = "\n".join(row[0] for row in rows)
    assert "action_events_by_action" in plan, plan
    assert "Seq Scan" not in plan, plan
    # And the RPC answers from it.
    listed = await isolated_db.api.stub.ListActionEvents(
        actions_pb2.ListActionEventsRequest(workspace_id=str(ws), action_id=str(action_id)),
        metadata=isolated_db.api.auth("carol"),
    )
    assert [e.seq for e in listed.events] == [29_998, 29_999, 30_000]
    assert uuid.UUID(listed.events[0].action.action_id) == action_id
