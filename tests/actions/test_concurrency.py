"""Concurrent mixed actions leave the fleet exactly as the audit log says."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import grpc
from fleetward.actions.v1 import actions_pb2

from tests.actions.helpers import Api, details
from tests.conftest import NewWorkspace

# Every agent that an action changed must be in the state that action's target row says
# (after), and that action must be completed; untouched agents are still active.
INCONSISTENT_AGENTS = """
SELECT a.agent_id, a.status, l.status AS action_status, t.after
FROM agents AS a
LEFT JOIN action_audit_log AS l ON l.action_id = a.last_action_id
LEFT JOIN action_targets AS t
    ON t.action_id = a.last_action_id AND t.target_kind = 'agent' AND t.target_key = a.agent_id
WHERE a.workspace_id = $1
  AND CASE
        WHEN a.last_action_id IS NULL THEN a.status <> 'active'
        ELSE t.action_id IS NULL
          OR l.status <> 'completed'
          OR t.after->>'status' <> a.status
          OR (t.after ? 'paused_until'
              AND (t.after->>'paused_until')::timestamptz IS DISTINCT FROM a.paused_until)
      END"""
INCONSISTENT_BUDGETS = """
SELECT b.scope, b.target_id FROM budgets AS b
LEFT JOIN action_audit_log AS l ON l.action_id = b.last_action_id
LEFT JOIN action_targets AS t
    ON t.action_id = b.last_action_id AND t.target_kind = 'budget'
   AND t.target_key = b.scope || ':' || b.target_id
WHERE b.workspace_id = $1
  AND (t.action_id IS NULL OR l.status <> 'completed'
       OR (t.after->>'monthly_limit_cents')::bigint IS DISTINCT FROM b.monthly_limit_cents)"""
# A completed action has pending, in_progress and completed events; a failed one ends failed.
EVENT_MISMATCH = """
SELECT l.action_id, l.status, array_agg(e.event_type ORDER BY e.seq) AS events
FROM action_audit_log AS l JOIN action_events AS e USING (action_id)
WHERE l.workspace_id = $1 AND l.action_type <> 'rollback' AND l.status <> 'denied'
GROUP BY l.action_id, l.status
HAVING NOT (array_agg(e.event_type ORDER BY e.seq))[1:3] @> ARRAY['action.pending']
    OR (l.status = 'completed' AND array_agg(e.event_type ORDER BY e.seq)
        <> ARRAY['action.pending', 'action.in_progress', 'action.completed'])"""
EXPECTED_REFUSALS = {"ALREADY_IN_STATE", "INSUFFICIENT_PERMISSIONS"}


async def _run_mixed_actions(
    api: Api, ws_id: uuid.UUID, agents: list[str], rng: random.Random
) -> list[actions_pb2.Action]:
    """200 random actions at once; the refused ones were refused for an expected reason."""
    choices = [
        lambda: api.execute("bob", ws_id, "pause_agent", target=rng.choice(agents)),
        lambda: api.execute("bob", ws_id, "resume_agent", target=rng.choice(agents)),
        lambda: api.execute(
            "bob",
            ws_id,
            rng.choice(["pause_agent", "resume_agent"]),
            scope="department",
            target=rng.choice(["engineering", "support"]),
        ),
        lambda: api.execute(
            "alice", ws_id, rng.choice(["pause_agent", "resume_agent"]), scope="fleet"
        ),
        lambda: api.execute(
            "dana",
            ws_id,
            "set_budget",
            scope="department",
            target="support",
            monthly_limit_cents=rng.randrange(10_000),
        ),
        lambda: api.execute("alice", ws_id, "restart_agent", target=rng.choice(agents)),
    ]
    outcomes = await asyncio.gather(
        *(rng.choice(choices)() for _ in range(200)), return_exceptions=True
    )
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    for o in outcomes:
        if isinstance(o, BaseException):
            assert isinstance(o, grpc.aio.AioRpcError), o
            assert details(o).reason in EXPECTED_REFUSALS, details(o)
    return done


async def _roll_back_a_random_half(
    api: Api, ws_id: uuid.UUID, done: list[actions_pb2.Action], rng: random.Random
) -> None:
    """Roll back a random half of ``done`` concurrently (supersession skipped)."""
    undo = [a for a in done if a.can_rollback and rng.random() < 0.5]
    rolled = await asyncio.gather(
        *(
            api.rollback(
                "alice", ws_id, a.action_id, skip_superseded=True, request_id=str(uuid.uuid4())
            )
            for a in undo
        ),
        return_exceptions=True,
    )
    for o in rolled:
        if isinstance(o, BaseException):
            assert isinstance(o, grpc.aio.AioRpcError), o
            assert details(o).reason in {"ALREADY_ROLLED_BACK"}, details(o)


async def _assert_fleet_matches_audit_log(pool: asyncpg.Pool, ws_id: uuid.UUID) -> None:
    assert await pool.fetch(INCONSISTENT_AGENTS, ws_id) == []
    assert await pool.fetch(INCONSISTENT_BUDGETS, ws_id) == []
    assert await pool.fetch(EVENT_MISMATCH, ws_id) == []
    unfinished = await pool.fetchval(
        "SELECT count(*) FROM action_audit_log WHERE workspace_id = $1 "
        "AND status IN ('pending', 'in_progress')",
        ws_id,
    )
    assert unfinished == 0


async def _assert_checker_notices_a_change_behind_the_log(
    pool: asyncpg.Pool, ws_id: uuid.UUID, agent: str
) -> None:
    """The checker itself notices an agent changed behind the audit log's back."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(
            "UPDATE agents SET status = 'retired', paused_until = NULL "
            "WHERE workspace_id = $1 AND agent_id = $2",
            ws_id,
            agent,
        )
        assert len(await conn.fetch(INCONSISTENT_AGENTS, ws_id)) == 1
        await tx.rollback()


async def test_two_hundred_concurrent_mixed_actions_stay_consistent(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace(agents_per_department=10)
    agents = sorted(ws.agents)
    rng = random.Random(4)
    done = await _run_mixed_actions(api, ws.id, agents, rng)
    assert len(done) > 100
    await _roll_back_a_random_half(api, ws.id, done, rng)
    await _assert_fleet_matches_audit_log(pool, ws.id)
    await _assert_checker_notices_a_change_behind_the_log(pool, ws.id, agents[0])
