"""Process-level crash recovery (docs/architecture.md §5.7) and graceful shutdown
(docs/architecture.md §9) of the action service.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from services.actions.action_lock import INTERRUPTED, lock_key
from services.actions.audit.verify import verify_workspace
from services.actions.db import Conn
from tests.actions.helpers import Api, details
from tests.catalog import RUNTIME_LOG_ENV, ExternalRestart
from tests.conftest import NewWorkspace, Secrets
from tests.events.processes import ServiceProcess, action_env, action_process

LOCK_AGENTS = """
SELECT agent_id FROM agents WHERE workspace_id = $1 AND agent_id = ANY($2) FOR UPDATE"""


async def wait_for(what: str, probe: object, limit_s: float = 30) -> None:
    """Poll the async ``probe()`` until it returns True."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await probe():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def statuses(pool: asyncpg.Pool, workspace: uuid.UUID) -> dict[str, str]:
    """request_id → status of the workspace's actions."""
    rows = await pool.fetch(
        "SELECT request_id, status FROM action_audit_log WHERE workspace_id = $1", workspace
    )
    return {r["request_id"]: r["status"] for r in rows}


@pytest.fixture
async def started(
    tmp_path: Path,
) -> AsyncIterator[list[ServiceProcess]]:
    """Processes a test starts; stopped (or already dead) at the end."""
    procs: list[ServiceProcess] = []
    yield procs
    for proc in procs:
        await proc.stop()


async def blocked_by(pool: asyncpg.Pool, blocker: Conn) -> int:
    """How many database sessions wait on a lock ``blocker``'s session holds."""
    blocker_pid = blocker.get_server_pid()
    count = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        blocker_pid,
    )
    return int(count)


async def _sigkill_while_blocked(
    proc: ServiceProcess,
    pool: asyncpg.Pool,
    secrets: Secrets,
    ws: uuid.UUID,
    request_id: str,
    action: str,
) -> None:
    """SIGKILL ``proc`` while alice's Execute of ``action`` on eng-code-1 waits for the agent's
    row lock, which the test holds; the call fails. A kind recorded in two steps has
    committed its pending row by then; one recorded in one transaction has committed nothing.
    """
    async with (
        grpc.aio.insecure_channel(proc.target) as channel,
        pool.acquire() as blocker,
    ):
        api = Api(channel, secrets)
        txn = blocker.transaction()
        await txn.start()
        await blocker.fetch(LOCK_AGENTS, ws, ["eng-code-1"])
        call = asyncio.create_task(
            api.execute(
                "alice", ws, action, target="eng-code-1", request_id=request_id, deadline=30
            )
        )

        async def waiting() -> bool:
            return await blocked_by(pool, blocker) == 1

        await wait_for("the executor waiting on the agent's lock", waiting)
        proc.signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        await txn.rollback()


async def _wait_for_advisory_lock_free(pool: asyncpg.Pool, action_id: uuid.UUID) -> None:
    """The dead process's database session ends once it finds its client gone; until then
    its advisory lock marks the action as running, and nobody may touch it.
    """

    async def lock_free() -> bool:
        async with pool.acquire() as conn:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(action_id)):
                await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(action_id))
                return True
        return False

    await wait_for("the dead session's advisory lock", lock_free)


async def _agent(pool: asyncpg.Pool, ws: uuid.UUID) -> tuple[str, int, uuid.UUID | None]:
    """eng-code-1's status, generation and last action."""
    agent = await pool.fetchrow(
        "SELECT status, generation, last_action_id FROM agents "
        "WHERE workspace_id = $1 AND agent_id = 'eng-code-1'",
        ws,
    )
    assert agent is not None
    return agent["status"], agent["generation"], agent["last_action_id"]


async def _assert_failed_with_no_effect(
    pool: asyncpg.Pool, ws: uuid.UUID, action_id: uuid.UUID, runtime: ExternalRestart
) -> None:
    """The action is failed as interrupted, changed nothing (rows or runtime) and its chain
    is intact.
    """
    row = await pool.fetchrow("SELECT * FROM action_audit_log WHERE action_id = $1", action_id)
    assert row is not None
    assert row["error_message"] == INTERRUPTED
    assert await _agent(pool, ws) == ("active", 0, None)
    assert runtime.told() == []
    assert (
        await pool.fetchval("SELECT count(*) FROM action_targets WHERE action_id = $1", action_id)
        == 0
    )
    events = await pool.fetch(
        "SELECT event_type FROM action_events WHERE action_id = $1 ORDER BY seq", action_id
    )
    assert [e["event_type"] for e in events] == ["action.pending", "action.failed"]
    async with pool.acquire() as conn:
        assert (await verify_workspace(conn, ws)).breaks == []


async def test_sigkill_mid_execution_leaves_nothing_and_the_retry_acts_once(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
    tmp_path: Path,
    started: list[ServiceProcess],
) -> None:
    """One transaction (docs/architecture.md §5.2): a crash before the commit leaves no row,
    no event and no effect; a retry under the same key is a new attempt, recorded once.
    """
    ws = await new_workspace()
    first = action_process(tmp_path, "first")
    started.append(first)
    await first.start(action_env(first, database_dsn, events_policy_target, dev_secrets))
    request_id = uuid.uuid4().hex
    await _sigkill_while_blocked(first, pool, dev_secrets, ws.id, request_id, "pause_agent")
    assert await statuses(pool, ws.id) == {}
    assert (
        await pool.fetchval("SELECT count(*) FROM action_events WHERE workspace_id = $1", ws.id)
        == 0
    )
    assert await _agent(pool, ws.id) == ("active", 0, None)

    second = action_process(tmp_path, "second")
    started.append(second)
    await second.start(action_env(second, database_dsn, events_policy_target, dev_secrets))
    async with grpc.aio.insecure_channel(second.target) as channel:
        done = await Api(channel, dev_secrets).execute(
            "alice", ws.id, "pause_agent", target="eng-code-1", request_id=request_id
        )
    assert done.status == actions_pb2.ACTION_STATUS_COMPLETED
    assert await statuses(pool, ws.id) == {request_id: "completed"}
    events = await pool.fetch(
        "SELECT event_type FROM action_events WHERE workspace_id = $1 ORDER BY seq", ws.id
    )
    assert [e["event_type"] for e in events] == [
        "action.pending",
        "action.in_progress",
        "action.completed",
    ]
    async with pool.acquire() as conn:
        assert (await verify_workspace(conn, ws.id)).breaks == []


async def test_sigkill_mid_external_effect_leaves_a_row_the_next_start_fails_with_no_effect(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
    tmp_path: Path,
    started: list[ServiceProcess],
) -> None:
    """Two steps (docs/architecture.md §5.7): a kind with an external effect commits its
    pending row first; after a crash, the next start's recovery fails it as interrupted.
    """
    ws = await new_workspace()
    runtime = ExternalRestart(tmp_path / "runtime.log")
    first = action_process(tmp_path, "first", test_catalog=True)
    started.append(first)
    extra = {RUNTIME_LOG_ENV: str(runtime.runtime_log)}
    await first.start(action_env(first, database_dsn, events_policy_target, dev_secrets, **extra))
    request_id = uuid.uuid4().hex
    await _sigkill_while_blocked(first, pool, dev_secrets, ws.id, request_id, "restart_agent")
    action_id = await pool.fetchval(
        "SELECT action_id FROM action_audit_log WHERE workspace_id = $1 AND request_id = $2",
        ws.id,
        request_id,
    )
    await _wait_for_advisory_lock_free(pool, action_id)
    assert (await statuses(pool, ws.id))[request_id] == "pending"

    second = action_process(tmp_path, "second", test_catalog=True)
    started.append(second)
    await second.start(
        action_env(
            second,
            database_dsn,
            events_policy_target,
            dev_secrets,
            FLEETWARD_RECOVERY_INTERVAL_S="0.5",
            **extra,
        )
    )

    async def failed() -> bool:
        return (await statuses(pool, ws.id))[request_id] == "failed"

    await wait_for("recovery by the next start", failed)
    await _assert_failed_with_no_effect(pool, ws.id, action_id, runtime)
    # A retry of the same request gets the recorded outcome, not REQUEST_IN_PROGRESS.
    async with grpc.aio.insecure_channel(second.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as retry:
            await Api(channel, dev_secrets).execute(
                "alice", ws.id, "restart_agent", target="eng-code-1", request_id=request_id
            )
    assert details(retry.value).reason == "ACTION_EXECUTION_FAILED"


async def _new_calls_refused(api: Api) -> grpc.StatusCode:
    """Wait until a new call is refused while in-flight ones are still being finished; its code.

    gRPC refuses them with CANCELLED on an open connection, UNAVAILABLE on a new one; a
    call that raced the start of the shutdown is held unserved until its deadline:
    DEADLINE_EXCEEDED. Served, it would return OK and the wait fails.
    """

    async def refusing() -> bool:
        try:
            await api.stub.ListActionTypes(
                actions_pb2.ListActionTypesRequest(), metadata=api.auth("carol"), timeout=2
            )
        except grpc.aio.AioRpcError as exc:
            refused.append(exc.code())
            return True
        return False

    refused: list[grpc.StatusCode] = []
    await wait_for("new calls refused", refusing, limit_s=4)
    return refused[0]


async def test_sigterm_during_load_completes_in_flight_calls(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
    tmp_path: Path,
    started: list[ServiceProcess],
) -> None:
    ws = await new_workspace(agents_per_department=5)
    agents = sorted(ws.agents)
    proc = action_process(tmp_path, "sigterm")
    started.append(proc)
    await proc.start(action_env(proc, database_dsn, events_policy_target, dev_secrets))
    async with (
        grpc.aio.insecure_channel(proc.target) as channel,
        pool.acquire() as blocker,
    ):
        api = Api(channel, dev_secrets)
        watch = api.stub.WatchActions(
            actions_pb2.WatchActionsRequest(workspace_id=str(ws.id)), metadata=api.auth("carol")
        )
        txn = blocker.transaction()
        await txn.start()
        await blocker.fetch(LOCK_AGENTS, ws.id, agents)
        # Ten in-flight Executes, each blocked on its agent's row lock inside its transaction.
        calls = [
            asyncio.create_task(api.execute("bob", ws.id, "pause_agent", target=agent, deadline=60))
            for agent in agents
        ]

        async def all_waiting() -> bool:
            return await blocked_by(pool, blocker) == len(agents)

        await wait_for("ten in-flight actions", all_waiting)
        proc.signal(signal.SIGTERM)

        assert await _new_calls_refused(api) in (
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        assert not await proc.serving()
        assert proc.proc is not None
        assert proc.proc.returncode is None
        await txn.rollback()  # let the in-flight actions run

        done = await asyncio.gather(*calls)
        assert {a.status for a in done} == {actions_pb2.ACTION_STATUS_COMPLETED}
        # The watch stream ended cleanly (OK), after replaying what it could.
        events = [e async for e in watch]
        assert await watch.code() == grpc.StatusCode.OK
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert await proc.wait() == 0
    assert set((await statuses(pool, ws.id)).values()) == {"completed"}
