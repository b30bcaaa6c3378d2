"""The one-transaction form against retries that race the first request (review findings,
each shown failing on the form before the idempotency key's lock): docs/architecture.md §5.3.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest

from services.actions.db import Conn, init_connection
from services.actions.lifecycle import one_transaction
from services.actions.model import Outcome
from tests.actions.helpers import STATUS, Api, details, new_action
from tests.conftest import NewWorkspace

LOCK_AGENTS = """
SELECT agent_id FROM agents WHERE workspace_id = $1 AND agent_id = ANY($2) FOR UPDATE"""


async def _blocked_by(pool: asyncpg.Pool, blocker: Conn) -> int:
    """How many sessions wait on a lock ``blocker``'s session holds."""
    count = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        blocker.get_server_pid(),
    )
    return int(count)


async def _until(what: str, probe: Any, limit_s: float = 30) -> None:
    for _ in range(int(limit_s / 0.05)):
        if await probe():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_timed_out_retry_leaves_the_first_request_its_outcome(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    """A retry whose wait for the first request times out is told REQUEST_IN_PROGRESS and
    records nothing; the first completes. (Before: the retry recorded ``failed`` under the
    key while the first was still in its transaction, and the first, finding its key
    taken, rolled its work back and answered the retry's failure.)
    """
    ws = await new_workspace()
    request_id = f"retry-{uuid.uuid4().hex}"

    def pause(deadline: float) -> Any:
        return api.execute(
            "bob",
            ws.id,
            "pause_agent",
            scope="department",
            target="engineering",
            request_id=request_id,
            deadline=deadline,
        )

    async with pool.acquire() as blocker:
        txn = blocker.transaction()
        await txn.start()
        # The first request locks eng-code-1 and -2 (agent_id order) and waits on eng-code-3.
        await blocker.fetch(LOCK_AGENTS, ws.id, ["eng-code-3"])
        first = asyncio.create_task(pause(30))

        async def first_waiting() -> bool:
            return await _blocked_by(pool, blocker) == 1

        await _until("the first request waiting on eng-code-3", first_waiting)
        with pytest.raises(grpc.aio.AioRpcError) as retry:
            await pause(1.5)  # lock_timeout: 80 % of it
        got = details(retry.value)
        assert (got.code, got.reason) == (grpc.StatusCode.ABORTED, "REQUEST_IN_PROGRESS")
        assert "action_id" not in got.metadata  # the first has no row yet
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM action_audit_log WHERE workspace_id = $1", ws.id
            )
            == 0
        )
        await txn.rollback()
    done = await first
    assert done.status == STATUS.ACTION_STATUS_COMPLETED
    rows = await pool.fetch("SELECT status FROM action_audit_log WHERE workspace_id = $1", ws.id)
    assert [r["status"] for r in rows] == ["completed"]
    # A later retry answers the first outcome.
    assert (await pause(10)).action_id == done.action_id


@pytest.fixture
async def one_connection_pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool configured like the service's."""
    created = await asyncpg.create_pool(database_dsn, min_size=1, max_size=2, init=init_connection)
    assert created is not None
    yield created
    await created.close()


class _Clock:
    """``datetime`` for one_transaction whose first ``now()`` lies ``behind`` in the past (the
    action began that long ago: a long effect), then real time.
    """

    def __init__(self, behind: timedelta) -> None:
        self.behind = behind
        self.calls = 0

    def now(self, tz: Any = None) -> datetime:
        self.calls += 1
        real = datetime.now(tz)
        return real - self.behind if self.calls == 1 else real


async def test_an_effect_longer_than_the_clock_check_is_still_recorded(
    one_connection_pool: asyncpg.Pool, new_workspace: NewWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every event is stamped when it is appended (the database refuses an event time more
    than 5 minutes from its clock); the row keeps when the action began. (Before: the
    pending event carried the start time, so an effect of over 5 minutes was recorded
    neither completed nor failed.)
    """
    ws = await new_workspace()
    monkeypatch.setattr(one_transaction, "datetime", _Clock(timedelta(seconds=301)))
    new = new_action(
        ws.id, action_type="set_budget", scope="fleet", target_id="", can_rollback=False
    )

    async def effect(conn: Conn) -> Outcome:
        return Outcome({"count": 0})

    row = await one_transaction.run(one_connection_pool, new, effect, 1000)
    assert row.status == "completed"
    assert row.completed_at is not None
    assert row.completed_at - row.created_at > timedelta(seconds=300)
