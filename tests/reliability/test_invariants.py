"""The invariant checker passes on real history and reports each kind of corruption.

Corruptions run in a database of this module only (created and dropped here), bypassing
the audit triggers with ``SET session_replication_role = replica`` where they refuse.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from services.actions.action_lock import lock_key
from services.actions.db import init_connection
from services.actions.migrate import migrate
from tests.actions.helpers import Api
from tests.conftest import Secrets, SessionDatabase, migrated_database
from tests.reliability.harness import assert_invariants, create_workspace
from tests.reliability.invariants import check_invariants, expect_one_action_per_request
from tests.servers import running_action_server


@pytest.fixture(scope="module")
async def scratch_database(server_dsn: str, role_password: str) -> AsyncIterator[SessionDatabase]:
    """A migrated database that only this module uses (and corrupts)."""
    async with migrated_database(server_dsn, role_password) as database:
        yield database


@pytest.fixture(scope="module")
def scratch_dsn(scratch_database: SessionDatabase) -> str:
    """The scratch database as its administrator (who corrupts it)."""
    return scratch_database.admin_dsn


@pytest.fixture(scope="module")
async def scratch_pool(scratch_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the scratch database."""
    p = await asyncpg.create_pool(scratch_dsn, min_size=1, max_size=4, init=init_connection)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture(scope="module")
async def scratch_api(
    scratch_database: SessionDatabase, rel_policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[Api]:
    """The action service on the scratch database, as the runtime role."""
    async with (
        running_action_server(
            scratch_database.runtime_dsn, rel_policy_target, dev_secrets, policy_timeout_ms=2000
        ) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        yield Api(channel, dev_secrets)


async def history(api: Api, pool: asyncpg.Pool) -> tuple[uuid.UUID, dict[str, str]]:
    """A workspace with every kind of action outcome; the action ids by name."""
    ws = await create_workspace(pool)
    ids: dict[str, str] = {}
    pause = await api.execute("bob", ws, "pause_agent", target="eng-code-1")
    ids["pause"] = pause.action_id
    dept = await api.execute("bob", ws, "pause_agent", scope="department", target="support")
    ids["rolled_back"] = dept.action_id
    await api.rollback("bob", ws, dept.action_id)
    budget = await api.execute(
        "dana", ws, "set_budget", scope="department", target="support", monthly_limit_cents=500
    )
    ids["budget"] = budget.action_id
    await api.execute("alice", ws, "restart_agent", target="eng-code-2")
    with pytest.raises(grpc.aio.AioRpcError):  # denied: carol is a viewer
        await api.execute("carol", ws, "pause_agent", target="eng-code-3")
    with pytest.raises(grpc.aio.AioRpcError):  # ALREADY_IN_STATE: nothing recorded
        await api.execute("bob", ws, "resume_agent", target="eng-code-3")
    return ws, ids


async def kinds(pool: asyncpg.Pool, ws: uuid.UUID) -> set[str]:
    async with pool.acquire() as conn:
        return {v.kind for v in await check_invariants(conn, [ws])}


async def test_real_history_satisfies_every_invariant(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, _ = await history(scratch_api, scratch_pool)
    await assert_invariants(scratch_pool, [ws])


async def test_an_agent_changed_behind_the_audit_log_is_a_replay_violation(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, _ = await history(scratch_api, scratch_pool)
    await scratch_pool.execute(
        "UPDATE agents SET status = 'active', paused_until = NULL "
        "WHERE workspace_id = $1 AND agent_id = 'eng-code-1'",
        ws,
    )
    assert await kinds(scratch_pool, ws) == {"replay"}


async def test_a_budget_changed_behind_the_audit_log_is_a_replay_violation(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, _ = await history(scratch_api, scratch_pool)
    await scratch_pool.execute(
        "UPDATE budgets SET monthly_limit_cents = 1 WHERE workspace_id = $1", ws
    )
    assert await kinds(scratch_pool, ws) == {"replay"}


async def test_a_pending_action_without_a_live_executor_is_an_orphan(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, _ = await history(scratch_api, scratch_pool)
    action_id = uuid.uuid4()
    await scratch_pool.execute(
        "INSERT INTO action_audit_log (action_id, workspace_id, action_type, scope, target_id, "
        "reason, actor_user_id, status, request_id, request_fingerprint) "
        "VALUES ($1, $2, 'pause_agent', 'agent', 'eng-code-3', 'x', 'bob', 'pending', $3, 'f')",
        action_id,
        ws,
        uuid.uuid4().hex,
    )
    async with scratch_pool.acquire() as executor:  # a live executor holds the lock
        await executor.execute("SELECT pg_advisory_lock($1)", lock_key(action_id))
        assert "orphan" not in await kinds(scratch_pool, ws)
        await executor.execute("SELECT pg_advisory_unlock($1)", lock_key(action_id))
    assert "orphan" in await kinds(scratch_pool, ws)


async def test_a_status_change_without_its_event_is_an_events_violation(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, ids = await history(scratch_api, scratch_pool)
    # completed -> rolled_back without naming a rollback is refused by the guard trigger;
    # past it, the missing event (and the missing rollback action) give it away.
    async with scratch_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE action_audit_log SET status = 'rolled_back', rolled_back_at = now() "
            "WHERE action_id = $1",
            uuid.UUID(ids["budget"]),
        )
    # ``audit verify``'s cross-check (the chain invariant) sees the row disagree with it.
    assert await kinds(scratch_pool, ws) == {"events", "rollback", "chain"}


async def test_a_forged_final_status_is_an_events_violation(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, ids = await history(scratch_api, scratch_pool)
    async with scratch_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE action_audit_log SET status = 'failed' WHERE action_id = $1",
            uuid.UUID(ids["pause"]),
        )
    assert "events" in await kinds(scratch_pool, ws)


async def test_a_rolled_back_action_naming_the_wrong_rollback_is_a_rollback_violation(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, ids = await history(scratch_api, scratch_pool)
    async with scratch_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE action_audit_log SET rollback_action_id = $2 WHERE action_id = $1",
            uuid.UUID(ids["rolled_back"]),
            uuid.UUID(ids["pause"]),
        )
    assert await kinds(scratch_pool, ws) == {"rollback", "chain"}


async def test_an_edited_event_breaks_the_chain(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, _ = await history(scratch_api, scratch_pool)
    async with scratch_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE action_events SET payload = jsonb_set(payload, '{reason}', '\"forged\"') "
            "WHERE workspace_id = $1 AND seq = 2",
            ws,
        )
    assert await kinds(scratch_pool, ws) == {"chain"}


async def test_a_deleted_newest_event_breaks_the_chain(
    scratch_api: Api, scratch_pool: asyncpg.Pool
) -> None:
    ws, _ = await history(scratch_api, scratch_pool)
    async with scratch_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "DELETE FROM action_events WHERE workspace_id = $1 AND seq = "
            "(SELECT max(seq) FROM action_events WHERE workspace_id = $1)",
            ws,
        )
    assert "chain" in await kinds(scratch_pool, ws)


async def test_two_actions_for_one_request_id_are_an_idempotency_violation(
    empty_database: str,
) -> None:
    await migrate(empty_database)
    pool = await asyncpg.create_pool(empty_database, min_size=1, max_size=2)
    assert pool is not None
    try:
        ws = await create_workspace(pool)
        await pool.execute(
            "ALTER TABLE action_audit_log DROP CONSTRAINT action_audit_log_idempotency"
        )
        for _ in range(2):
            await pool.execute(
                "INSERT INTO action_audit_log (action_id, workspace_id, action_type, scope, "
                "target_id, reason, actor_user_id, status, request_id, request_fingerprint, "
                "error_message) VALUES ($1, $2, 'pause_agent', 'agent', 'eng-code-1', 'x', "
                "'bob', 'denied', 'same-key', 'f', 'denied')",
                uuid.uuid4(),
                ws,
            )
        assert "idempotency" in await kinds(pool, ws)
        async with pool.acquire() as conn:
            found = await expect_one_action_per_request(conn, ws, "bob", ["same-key", "lost"])
        assert sorted(v.detail for v in found) == ["bob/lost: 0 actions", "bob/same-key: 2 actions"]
    finally:
        await pool.close()
