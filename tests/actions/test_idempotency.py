"""Idempotency on (workspace, actor, request_id): repeats, reuse, races, orphans."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from services.actions.action_lock import lock_key
from services.actions.idempotency import fingerprint
from tests.actions.helpers import STATUS, Api, counts, details
from tests.catalog import installed
from tests.conftest import NewWorkspace


async def test_repeat_returns_the_original_action_and_acts_once(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    first = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", request_id="r-1")
    after_first = await counts(pool, ws.id)
    again = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", request_id="r-1")
    assert again == first
    assert await counts(pool, ws.id) == after_first


async def test_same_key_for_a_different_request_is_rejected(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    first = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", request_id="r-2")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-2", request_id="r-2")
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert d.metadata["action_id"] == first.action_id
    # Another caller's key space is its own.
    other = await api.execute("alice", ws.id, "pause_agent", target="eng-code-2", request_id="r-2")
    assert other.action_id != first.action_id


async def test_repeat_of_a_denied_request_returns_the_original_denial(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    errors = []
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute("carol", ws.id, "pause_agent", target="eng-code-1", request_id="d")
        errors.append(details(err.value))
    assert errors[0] == errors[1]
    assert errors[0].reason == "INSUFFICIENT_PERMISSIONS"
    rows = await pool.fetch("SELECT status FROM action_audit_log WHERE workspace_id = $1", ws.id)
    assert [r["status"] for r in rows] == ["denied"]


@pytest.mark.parametrize(
    ("scope", "target", "params"),
    [
        # A duplicate that runs after the first committed plans nothing (paused agents are
        # skipped) and finds the key taken at its insert.
        ("department", "engineering", {}),
        # A duplicate that runs after the first committed fails its effect (ALREADY_IN_STATE:
        # already paused indefinitely): no failed row, the key is taken; the first outcome.
        ("agent", "eng-code-1", {"indefinite": True}),
    ],
)
async def test_concurrent_duplicates_answer_the_first_outcome(
    api: Api,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
    scope: str,
    target: str,
    params: dict[str, Any],
) -> None:
    """One transaction (docs/architecture.md §5.2): a duplicate waits on the key (or on the
    rows the first locked) and answers what the first did; no REQUEST_IN_PROGRESS.
    """
    ws = await new_workspace()
    calls = [
        api.execute(
            "bob", ws.id, "pause_agent", scope=scope, target=target, request_id="same", **params
        )
        for _ in range(20)
    ]
    outcomes = await asyncio.gather(*calls)
    assert len({o.action_id for o in outcomes}) == 1
    assert {o.status for o in outcomes} == {STATUS.ACTION_STATUS_COMPLETED}
    rows = await pool.fetch("SELECT status FROM action_audit_log WHERE workspace_id = $1", ws.id)
    assert [r["status"] for r in rows] == ["completed"]
    events = await pool.fetchval(
        "SELECT count(*) FROM action_events WHERE workspace_id = $1", ws.id
    )
    assert events == 3


async def test_concurrent_duplicates_of_an_external_effect_act_once(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace, tmp_path: Path
) -> None:
    """Two steps: the pending row commits first, so a duplicate may be told it runs."""
    ws = await new_workspace()
    with installed(tmp_path / "runtime.log") as runtime:
        calls = [
            api.execute("alice", ws.id, "restart_agent", target="eng-code-1", request_id="same")
            for _ in range(20)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    ids = {o.action_id for o in outcomes if not isinstance(o, BaseException)}
    assert len(ids) == 1
    for o in outcomes:
        if isinstance(o, BaseException):
            assert isinstance(o, grpc.aio.AioRpcError)
            assert details(o).reason == "REQUEST_IN_PROGRESS"
    rows = await pool.fetch("SELECT status FROM action_audit_log WHERE workspace_id = $1", ws.id)
    assert [r["status"] for r in rows] == ["completed"]
    (action_id,) = ids
    assert runtime.told() == [f"{action_id} eng-code-1 1"]


async def test_retry_after_a_client_deadline_returns_the_completed_action(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    async with pool.acquire() as blocker:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "SELECT 1 FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-3' FOR UPDATE",
            ws.id,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute(
                "bob", ws.id, "pause_agent", target="eng-code-3", request_id="late", deadline=0.3
            )
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await tx.rollback()  # the shielded action goes on and completes
    for _ in range(50):
        status = await pool.fetchval(
            "SELECT status FROM action_audit_log WHERE workspace_id = $1", ws.id
        )
        if status not in ("pending", "in_progress"):
            break
        await asyncio.sleep(0.05)
    again = await api.execute("bob", ws.id, "pause_agent", target="eng-code-3", request_id="late")
    assert again.status == STATUS.ACTION_STATUS_COMPLETED
    assert (await counts(pool, ws.id))["actions"] == 1


async def _orphan(pool: asyncpg.Pool, ws_id: uuid.UUID, request_id: str) -> uuid.UUID:
    """A pending row as a crashed executor would leave it (same request as the retry)."""
    action_id = uuid.uuid4()
    fp = fingerprint(
        {
            "workspace_id": str(ws_id),
            "action_type": "pause_agent",
            "scope": "agent",
            "target_id": "eng-code-1",
            "reason": "test intervention",
            "params": {},
        }
    )
    await pool.execute(
        "INSERT INTO action_audit_log (action_id, workspace_id, action_type, scope, target_id, "
        "action_params, reason, actor_user_id, actor_role, status, can_rollback, request_id, "
        "request_fingerprint) VALUES ($1, $2, 'pause_agent', 'agent', 'eng-code-1', $3, "
        "'test intervention', 'bob', 'operator', 'pending', true, $4, $5)",
        action_id,
        ws_id,
        json.dumps({}),
        request_id,
        fp,
    )
    return action_id


async def test_running_request_is_in_progress_and_an_orphan_is_recovered(
    api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    action_id = await _orphan(pool, ws.id, "crashed")
    async with pool.acquire() as holder:
        # While its executor (here: this session) holds the lock, it is still running.
        await holder.execute("SELECT pg_advisory_lock($1)", lock_key(action_id))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await api.execute(
                    "bob", ws.id, "pause_agent", target="eng-code-1", request_id="crashed"
                )
            d = details(err.value)
            assert (d.code, d.reason) == (grpc.StatusCode.ABORTED, "REQUEST_IN_PROGRESS")
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1)", lock_key(action_id))
    # Lock free: the executor is gone; the retry recovers the row inline.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1", request_id="crashed")
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.INTERNAL, "ACTION_EXECUTION_FAILED")
    assert "interrupted before completion" in d.message
    row = await pool.fetchrow(
        "SELECT status, error_message FROM action_audit_log WHERE action_id = $1", action_id
    )
    assert row is not None
    assert row["status"] == "failed"
    assert (
        await pool.fetchval(
            "SELECT status FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-1'", ws.id
        )
    ) == "active"
