"""Crash recovery (docs/architecture.md §5.7): only unfinished actions whose advisory lock
is free are failed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.actions.action_lock import lock_key
from services.actions.db import init_connection
from services.actions.recovery import recover_orphans
from tests.conftest import NewWorkspace

INSERT_PENDING = """
INSERT INTO action_audit_log (action_id, workspace_id, action_type, scope, target_id,
    action_params, reason, actor_user_id, status, request_id, request_fingerprint)
VALUES ($1, $2, 'pause_agent', 'fleet', '', $3, 'crash test', 'bob', 'pending', $4, 'fp')"""


@pytest.fixture
async def service_pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool configured like the action service's."""
    pool = await asyncpg.create_pool(database_dsn, min_size=1, max_size=2, init=init_connection)
    assert pool is not None
    yield pool
    await pool.close()


async def test_recovery_fails_only_orphans(
    service_pool: asyncpg.Pool, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    orphan, running = uuid.uuid4(), uuid.uuid4()
    for action_id in (orphan, running):
        await pool.execute(INSERT_PENDING, action_id, ws.id, json.dumps({}), action_id.hex)
    async with pool.acquire() as executor:
        await executor.execute("SELECT pg_advisory_lock($1)", lock_key(running))
        try:
            recovered = await recover_orphans(service_pool, min_age_s=0)
        finally:
            await executor.execute("SELECT pg_advisory_unlock($1)", lock_key(running))
    assert orphan in recovered
    assert running not in recovered
    rows = await pool.fetch(
        "SELECT action_id, status, error_message FROM action_audit_log WHERE workspace_id = $1",
        ws.id,
    )
    by_id = {r["action_id"]: r for r in rows}
    assert by_id[orphan]["status"] == "failed"
    assert "interrupted before completion" in by_id[orphan]["error_message"]
    assert by_id[running]["status"] == "pending"
    # Leave nothing unfinished for other tests' recovery runs to find.
    await recover_orphans(service_pool, min_age_s=0)
