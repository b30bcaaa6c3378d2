"""Expiring pauses (docs/architecture.md §5.8): one audited resume per expired pause, by
system:scheduler, once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.actions.audit.verify import verify_workspace
from services.actions.call import Call
from services.actions.db import init_connection
from services.actions.pipeline import Pipeline
from services.actions.scheduler import REASON, SUBJECT, ExpiredPause, resume_expired
from services.actions.server import ActionServer
from services.common.status import ServiceError
from services.common.tokens import Principal
from tests.actions.helpers import Api, agent_states
from tests.conftest import NewWorkspace

EXPIRE = """
UPDATE agents SET paused_until = now() - interval '1 minute'
WHERE workspace_id = $1 AND last_action_id = $2"""

SCHEDULER_ACTIONS = """
SELECT * FROM action_audit_log
WHERE workspace_id = $1 AND actor_user_id = $2 ORDER BY created_at"""


@pytest.fixture
async def second_pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """Another replica's pool (configured like the action service's)."""
    p = await asyncpg.create_pool(database_dsn, min_size=1, max_size=4, init=init_connection)
    assert p is not None
    yield p
    await p.close()


def replica(server: ActionServer, pool: asyncpg.Pool | None = None) -> Pipeline:
    """The scheduler's pipeline of the server (or of another replica's ``pool``)."""
    return Pipeline(pool or server.pool, server.policy, server.tasks)


async def run_until_quiet(
    scheduler: Pipeline, workspace: uuid.UUID, *, within_s: float = 30.0
) -> None:
    """Run scheduler passes until no expired pause is left in ``workspace``.

    Passes repeat until the state is observed, not a fixed number of times: the server's
    own scheduler job runs too, and while it holds a pause's claim this replica's passes
    skip that pause (SKIP LOCKED) and return at once.
    """
    pool = scheduler.pool
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        await resume_expired(scheduler)
        left = await pool.fetchval(
            "SELECT count(*) FROM agents WHERE workspace_id = $1 AND status = 'paused' "
            "AND paused_until <= now()",
            workspace,
        )
        if left == 0:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{left} expired pauses left after {within_s} s")
        await asyncio.sleep(0.05)


async def test_expired_pause_is_resumed_by_one_audited_action(
    events_api: Api, events_server: ActionServer, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = await events_api.execute(
        "bob", ws.id, "pause_agent", scope="department", target="engineering"
    )
    await pool.execute(EXPIRE, ws.id, uuid.UUID(pause.action_id))
    await run_until_quiet(replica(events_server), ws.id)

    assert set((await agent_states(pool, ws.id)).values()) == {"active"}
    resumes = await pool.fetch(SCHEDULER_ACTIONS, ws.id, SUBJECT)
    assert len(resumes) == 1
    resume = resumes[0]
    assert resume["action_type"] == "resume_agent"
    assert resume["status"] == "completed"
    assert resume["reason"] == REASON
    assert (resume["scope"], resume["target_id"]) == ("department", "engineering")
    assert resume["can_rollback"] is False
    engineering = ws.agents_in("engineering")
    targets = await pool.fetch(
        "SELECT target_key FROM action_targets WHERE action_id = $1 ORDER BY target_key",
        resume["action_id"],
    )
    assert [t["target_key"] for t in targets] == engineering
    owners = await pool.fetch(
        "SELECT DISTINCT last_action_id FROM agents WHERE workspace_id = $1 AND agent_id = ANY($2)",
        ws.id,
        engineering,
    )
    assert [o["last_action_id"] for o in owners] == [resume["action_id"]]
    events = await pool.fetch(
        "SELECT event_type FROM action_events WHERE action_id = $1 ORDER BY seq",
        resume["action_id"],
    )
    assert [e["event_type"] for e in events] == [
        "action.pending",
        "action.in_progress",
        "action.completed",
    ]
    async with pool.acquire() as conn:
        assert (await verify_workspace(conn, ws.id)).breaks == []


async def test_agent_paused_again_by_a_later_action_stays_paused(
    events_api: Api, events_server: ActionServer, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    first = await events_api.execute(
        "bob", ws.id, "pause_agent", scope="department", target="support"
    )
    await pool.execute(EXPIRE, ws.id, uuid.UUID(first.action_id))
    # Before the scheduler gets to it, one agent is paused again (agent scope, new expiry).
    again = await events_api.execute(
        "bob", ws.id, "pause_agent", target="sup-chat-2", duration_minutes=60
    )
    await run_until_quiet(replica(events_server), ws.id)

    states = await agent_states(pool, ws.id)
    assert states["sup-chat-2"] == "paused"
    assert states["sup-chat-1"] == states["sup-chat-3"] == "active"
    owner = await pool.fetchval(
        "SELECT last_action_id FROM agents WHERE workspace_id = $1 AND agent_id = 'sup-chat-2'",
        ws.id,
    )
    assert str(owner) == again.action_id
    resumes = await pool.fetch(SCHEDULER_ACTIONS, ws.id, SUBJECT)
    assert len(resumes) == 1
    assert json.loads(resumes[0]["result"])["count"] == 2


async def test_indefinite_and_future_pauses_are_left_alone(
    events_api: Api, events_server: ActionServer, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    await events_api.execute("bob", ws.id, "pause_agent", target="eng-code-1", indefinite=True)
    await events_api.execute("bob", ws.id, "pause_agent", target="eng-code-2")
    await resume_expired(replica(events_server))
    states = await agent_states(pool, ws.id)
    assert states["eng-code-1"] == states["eng-code-2"] == "paused"
    assert await pool.fetch(SCHEDULER_ACTIONS, ws.id, SUBJECT) == []


async def test_concurrent_schedulers_resume_each_pause_once(
    events_api: Api,
    events_server: ActionServer,
    second_pool: asyncpg.Pool,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
) -> None:
    ws = await new_workspace(agents_per_department=5)
    pauses = [
        await events_api.execute("bob", ws.id, "pause_agent", target=agent)
        for agent in sorted(ws.agents)
    ]
    for pause in pauses:
        await pool.execute(EXPIRE, ws.id, uuid.UUID(pause.action_id))
    # Four passes on two "replicas" race for the same ten expired pauses.
    replicas = (replica(events_server), replica(events_server, second_pool))
    await asyncio.gather(*(resume_expired(r) for r in replicas * 2))
    await run_until_quiet(replicas[1], ws.id)

    assert set((await agent_states(pool, ws.id)).values()) == {"active"}
    resumes = await pool.fetch(SCHEDULER_ACTIONS, ws.id, SUBJECT)
    assert len(resumes) == len(pauses)
    resumed = await pool.fetch(
        "SELECT t.target_key FROM action_targets t JOIN action_audit_log a USING (action_id) "
        "WHERE a.workspace_id = $1 AND a.actor_user_id = $2",
        ws.id,
        SUBJECT,
    )
    assert sorted(r["target_key"] for r in resumed) == sorted(ws.agents)


async def test_only_a_system_actor_acts_without_the_policy(
    events_server: ActionServer, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    pause = {"workspace_id": ws.id, "action_id": uuid.uuid4(), "scope": "fleet", "target_id": ""}
    intent = ExpiredPause(pause, 1)  # type: ignore[arg-type]  # a Record's columns
    with pytest.raises(ServiceError) as err:
        await replica(events_server).run_as_system(Call(Principal("bob", {})), intent)
    assert err.value.reason == "INTERNAL"
    assert await pool.fetch(SCHEDULER_ACTIONS, ws.id, "bob") == []
