"""The database guards of docs/architecture.md §5.6: status machine, immutable columns, append-only.

Rows are written directly in SQL, in a database of this module's own (``isolated_pool``),
so no running service ever meets them.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

_REFUSED = asyncpg.IntegrityConstraintViolationError
_NEW_WORKSPACE = "INSERT INTO workspaces (id, name) VALUES ($1, $2)"
_NEW_ACTION = """
INSERT INTO action_audit_log (action_id, workspace_id, action_type, scope, target_id,
    action_params, reason, actor_user_id, actor_role, status, can_rollback,
    request_id, request_fingerprint, policy_version, decision_id)
VALUES ($1, $2, 'pause_agent', 'agent', 'eng-code-1', '{"duration_minutes": 30}',
    'investigating cost spike', 'bob', 'operator', $3, true,
    $4, 'fingerprint', 'v1', 'decision-1')"""
_SET_STATUS = "UPDATE action_audit_log SET status = $2 WHERE action_id = $1"
_ROLL_BACK = """
UPDATE action_audit_log
SET status = 'rolled_back', rollback_action_id = $2, rolled_back_at = now()
WHERE action_id = $1"""
_NEW_TARGET = """
INSERT INTO action_targets (action_id, target_kind, target_key, before, after)
VALUES ($1, 'agent', 'eng-code-1', '{"status": "active"}', '{"status": "paused"}')"""
_STATUS = "SELECT status FROM action_audit_log WHERE action_id = $1"
_NEW_EVENT = """
INSERT INTO action_events (workspace_id, seq, action_id, event_type, payload, created_at,
    prev_hash, hash)
VALUES ($1, 1, $2, 'action.pending', '{}', now(), repeat('0', 64), repeat('a', 64))"""


@pytest.fixture
async def workspace_id(isolated_pool: asyncpg.Pool) -> uuid.UUID:
    """A workspace of this test's own."""
    ws = uuid.uuid4()
    await isolated_pool.execute(_NEW_WORKSPACE, ws, f"ws-{ws.hex[:12]}")
    return ws


async def _action(pool: asyncpg.Pool, workspace: uuid.UUID, status: str) -> uuid.UUID:
    action_id = uuid.uuid4()
    await pool.execute(_NEW_ACTION, action_id, workspace, status, f"req-{action_id.hex}")
    return action_id


async def _transition(
    pool: asyncpg.Pool, workspace: uuid.UUID, old: str, new: str
) -> asyncpg.PostgresError:
    action_id = await _action(pool, workspace, old)
    with pytest.raises(_REFUSED) as refused:
        await pool.execute(_SET_STATUS, action_id, new)
    assert await pool.fetchval(_STATUS, action_id) == old
    return refused.value


async def test_completed_action_cannot_return_to_pending(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    error = await _transition(isolated_pool, workspace_id, "completed", "pending")
    assert "invalid status transition completed -> pending" in str(error)


async def test_failed_action_cannot_become_completed(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    error = await _transition(isolated_pool, workspace_id, "failed", "completed")
    assert "invalid status transition failed -> completed" in str(error)


async def test_denied_action_cannot_become_completed(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    error = await _transition(isolated_pool, workspace_id, "denied", "completed")
    assert "invalid status transition denied -> completed" in str(error)


async def test_pending_action_cannot_skip_to_completed(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    error = await _transition(isolated_pool, workspace_id, "pending", "completed")
    assert "invalid status transition pending -> completed" in str(error)


async def test_rolled_back_action_cannot_become_completed_again(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    error = await _transition(isolated_pool, workspace_id, "rolled_back", "completed")
    assert "invalid status transition rolled_back -> completed" in str(error)


async def test_failed_action_cannot_be_rolled_back(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    error = await _transition(isolated_pool, workspace_id, "failed", "rolled_back")
    assert "invalid status transition failed -> rolled_back" in str(error)


async def test_a_final_action_cannot_be_rewritten_in_place(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    action_id = await _action(isolated_pool, workspace_id, "completed")

    with pytest.raises(_REFUSED, match="is final"):
        await isolated_pool.execute(
            "UPDATE action_audit_log SET result = '{\"count\": 0}' WHERE action_id = $1",
            action_id,
        )


@pytest.mark.parametrize(
    "path",
    [
        ["pending", "in_progress", "completed", "rolled_back"],
        ["pending", "in_progress", "failed"],
        ["pending", "failed"],
        ["pending", "denied"],
    ],
    ids=lambda p: "-".join(p),
)
async def test_every_documented_transition_is_allowed(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID, path: list[str]
) -> None:
    action_id = await _action(isolated_pool, workspace_id, path[0])

    for status in path[1:]:
        if status == "rolled_back":
            undo = await _action(isolated_pool, workspace_id, "pending")
            await isolated_pool.execute(_ROLL_BACK, action_id, undo)
        else:
            await isolated_pool.execute(_SET_STATUS, action_id, status)
        assert await isolated_pool.fetchval(_STATUS, action_id) == status


async def test_a_running_action_may_record_its_progress(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    action_id = await _action(isolated_pool, workspace_id, "in_progress")

    await isolated_pool.execute(
        "UPDATE action_audit_log SET started_at = now() WHERE action_id = $1", action_id
    )
    assert await isolated_pool.fetchval(
        "SELECT started_at IS NOT NULL FROM action_audit_log WHERE action_id = $1", action_id
    )


async def _change_column(
    pool: asyncpg.Pool, workspace: uuid.UUID, assignment: str
) -> asyncpg.PostgresError:
    # A pending row: only the immutability rule can refuse the change.
    action_id = await _action(pool, workspace, "pending")
    before = await pool.fetchrow("SELECT * FROM action_audit_log WHERE action_id = $1", action_id)
    with pytest.raises(_REFUSED) as refused:
        await pool.execute(
            f"UPDATE action_audit_log SET {assignment} WHERE action_id = $1", action_id
        )
    after = await pool.fetchrow("SELECT * FROM action_audit_log WHERE action_id = $1", action_id)
    assert after == before
    assert f"immutable column of action {action_id} changed" in str(refused.value)
    return refused.value


async def test_actor_user_id_cannot_change(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    await _change_column(isolated_pool, workspace_id, "actor_user_id = 'mallory'")


async def test_action_params_cannot_change(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    await _change_column(
        isolated_pool, workspace_id, "action_params = '{\"duration_minutes\": 10080}'"
    )


async def test_created_at_cannot_change(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    await _change_column(isolated_pool, workspace_id, "created_at = created_at - interval '1 day'")


@pytest.mark.parametrize(
    "assignment",
    [
        "action_type = 'restart_agent'",
        "scope = 'fleet'",
        "target_id = 'eng-code-2'",
        "reason = 'something else'",
        "actor_role = 'admin'",
        "request_id = 'another-request'",
        "request_fingerprint = 'other'",
        "can_rollback = false",
        "policy_version = 'v2'",
        "decision_id = 'decision-2'",
        "action_id = gen_random_uuid()",
    ],
)
async def test_other_who_what_when_columns_cannot_change(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID, assignment: str
) -> None:
    await _change_column(isolated_pool, workspace_id, assignment)


async def test_action_audit_log_rows_cannot_be_deleted(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    action_id = await _action(isolated_pool, workspace_id, "completed")

    with pytest.raises(_REFUSED, match="action_audit_log is append-only: DELETE"):
        await isolated_pool.execute("DELETE FROM action_audit_log WHERE action_id = $1", action_id)
    assert await isolated_pool.fetchval(_STATUS, action_id) == "completed"


async def test_action_audit_log_cannot_be_truncated(isolated_pool: asyncpg.Pool) -> None:
    with pytest.raises(_REFUSED, match="action_audit_log is append-only: TRUNCATE"):
        await isolated_pool.execute("TRUNCATE action_audit_log CASCADE")


async def _event(pool: asyncpg.Pool, workspace: uuid.UUID) -> uuid.UUID:
    action_id = await _action(pool, workspace, "pending")
    await pool.execute(_NEW_EVENT, workspace, action_id)
    return action_id


async def test_action_events_cannot_be_updated(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    await _event(isolated_pool, workspace_id)

    with pytest.raises(_REFUSED, match="action_events is append-only: UPDATE"):
        await isolated_pool.execute(
            "UPDATE action_events SET hash = repeat('b', 64) WHERE workspace_id = $1",
            workspace_id,
        )
    assert await isolated_pool.fetchval(
        "SELECT hash FROM action_events WHERE workspace_id = $1", workspace_id
    ) == ("a" * 64)


async def test_action_events_cannot_be_deleted(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    await _event(isolated_pool, workspace_id)

    with pytest.raises(_REFUSED, match="action_events is append-only: DELETE"):
        await isolated_pool.execute(
            "DELETE FROM action_events WHERE workspace_id = $1", workspace_id
        )
    assert (
        await isolated_pool.fetchval(
            "SELECT count(*) FROM action_events WHERE workspace_id = $1", workspace_id
        )
        == 1
    )


async def test_action_events_cannot_be_truncated(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    await _event(isolated_pool, workspace_id)

    with pytest.raises(_REFUSED, match="action_events is append-only: TRUNCATE"):
        await isolated_pool.execute("TRUNCATE action_events")
    assert (
        await isolated_pool.fetchval(
            "SELECT count(*) FROM action_events WHERE workspace_id = $1", workspace_id
        )
        == 1
    )


async def test_action_targets_cannot_be_rewritten(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    action_id = await _action(isolated_pool, workspace_id, "in_progress")
    await isolated_pool.execute(_NEW_TARGET, action_id)
    await isolated_pool.execute(_SET_STATUS, action_id, "completed")

    with pytest.raises(_REFUSED, match="action_targets is append-only: UPDATE"):
        await isolated_pool.execute(
            "UPDATE action_targets SET before = '{}' WHERE action_id = $1", action_id
        )


async def test_rolling_back_cannot_rewrite_the_result_or_error(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    action_id = await _action(isolated_pool, workspace_id, "completed")
    undo = await _action(isolated_pool, workspace_id, "pending")

    for assignment in (
        "result = '{\"changed\": []}'",
        "error_message = 'nothing happened'",
        "completed_at = now() - interval '1 day'",
    ):
        with pytest.raises(_REFUSED, match="may set only rollback_action_id and rolled_back_at"):
            await isolated_pool.execute(
                "UPDATE action_audit_log SET status = 'rolled_back', rollback_action_id = $2, "
                f"rolled_back_at = now(), {assignment} WHERE action_id = $1",
                action_id,
                undo,
            )
    with pytest.raises(_REFUSED, match="may set only"):  # no rollback named
        await isolated_pool.execute(_SET_STATUS, action_id, "rolled_back")
    assert await isolated_pool.fetchval(_STATUS, action_id) == "completed"


async def test_targets_are_written_only_while_their_action_completes(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    for status in ("pending", "completed", "rolled_back", "failed", "denied"):
        action_id = await _action(isolated_pool, workspace_id, status)
        with pytest.raises(_REFUSED, match="may only be written while it completes"):
            await isolated_pool.execute(_NEW_TARGET, action_id)
    with pytest.raises(_REFUSED, match="action_targets is append-only: TRUNCATE"):
        await isolated_pool.execute("TRUNCATE action_targets")


async def test_the_chain_head_moves_only_forward_onto_an_appended_event(
    isolated_pool: asyncpg.Pool, workspace_id: uuid.UUID
) -> None:
    await _event(isolated_pool, workspace_id)  # seq 1, hash "a" * 64, head still at 0
    move = "UPDATE audit_chain_heads SET last_seq = $2, last_hash = $3 WHERE workspace_id = $1"

    with pytest.raises(_REFUSED, match="may only move to an appended event"):
        await isolated_pool.execute(move, workspace_id, 1, "f" * 64)
    with pytest.raises(_REFUSED, match="may only move to an appended event"):
        await isolated_pool.execute(move, workspace_id, 2, "a" * 64)
    await isolated_pool.execute(move, workspace_id, 1, "a" * 64)
    with pytest.raises(_REFUSED, match="only moves forward"):
        await isolated_pool.execute(move, workspace_id, 0, "0" * 64)
    with pytest.raises(_REFUSED, match="only moves forward"):
        await isolated_pool.execute(move, workspace_id, 1, "a" * 64)
    with pytest.raises(_REFUSED, match="DELETE"):
        await isolated_pool.execute(
            "DELETE FROM audit_chain_heads WHERE workspace_id = $1", workspace_id
        )
    with pytest.raises(_REFUSED, match="audit_chain_heads is append-only: TRUNCATE"):
        await isolated_pool.execute("TRUNCATE audit_chain_heads")
    assert (
        await isolated_pool.fetchval(
            "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1", workspace_id
        )
        == 1
    )
