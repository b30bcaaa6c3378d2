"""The audit rows: ``action_audit_log`` and the ``action_targets`` each completed action wrote.

An action whose effect is rows in PostgreSQL is recorded final with its targets and events
in one round trip at the end of its one transaction (migrations/0007); one with an external
effect is claimed (``pending``, with its event), then completed (with its targets and
events) or failed, each in one round trip (migrations/0003 and 0006); a denial is inserted
final. Every function that writes also
appends the transaction's events to the workspace chain (:mod:`.events`), last.
See docs/architecture.md §5.2 (the recorded life) and §6 (the data model).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.actions.audit import documents
from services.actions.catalog._base import Change
from services.actions.db import Conn, Row
from services.actions.model import ActionRecord, ActionStatus, NewAction
from services.actions.store import events
from services.common import names

# migrations/0006_action_trace_id.sql: the pending row, its event and the chain, by name.
CLAIM = """
SELECT * FROM fleetward_claim_action_v2(
    p_lock_key => $1, p_action_id => $2, p_workspace_id => $3, p_action_type => $4,
    p_scope => $5, p_target_id => $6, p_params => $7, p_reason => $8, p_actor => $9,
    p_roles => $10, p_can_rollback => $11, p_rollback_of => $12, p_request_id => $13,
    p_fingerprint => $14, p_policy_version => $15, p_decision_id => $16, p_trace_id => $17,
    p_created_at => $18, p_event_payload => $19, p_event_head => $20, p_doc_tail => $21,
    p_channel => $22)"""
# migrations/0003: in_progress, completed with its result, action_targets and the events.
COMPLETE = """
SELECT * FROM fleetward_complete_action(
    p_action_id => $1, p_started_at => $2, p_completed_at => $3, p_result => $4,
    p_target_kinds => $5, p_target_keys => $6, p_befores => $7, p_afters => $8,
    p_event_action_ids => $9, p_event_types => $10, p_event_payloads => $11,
    p_event_created_at => $12, p_event_heads => $13, p_doc_tail => $14, p_channel => $15)"""
# migrations/0007: an action recorded in its final status in one call (the one-transaction
# form): the row, its action_targets and its events; nothing when the key is taken.
RECORD = """
SELECT * FROM fleetward_record_action_v1(
    p_action_id => $1, p_workspace_id => $2, p_action_type => $3, p_scope => $4,
    p_target_id => $5, p_params => $6, p_reason => $7, p_actor => $8, p_roles => $9,
    p_can_rollback => $10, p_rollback_of => $11, p_request_id => $12, p_fingerprint => $13,
    p_policy_version => $14, p_decision_id => $15, p_trace_id => $16, p_status => $17,
    p_created_at => $18, p_started_at => $19, p_completed_at => $20, p_result => $21,
    p_error_message => $22, p_error_details => $23, p_target_kinds => $24,
    p_target_keys => $25, p_befores => $26, p_afters => $27, p_event_heads => $28,
    p_doc_tail => $29, p_channel => $30)"""
INSERT_DENIED = """
INSERT INTO action_audit_log (
    action_id, workspace_id, action_type, scope, target_id, action_params, reason,
    actor_user_id, actor_role, status, can_rollback, rollback_of_action_id, request_id,
    request_fingerprint, policy_version, decision_id, trace_id, error_message, error_details,
    completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'denied', $10, $11, $12, $13, $14, $15, $16, $17,
        $18, clock_timestamp())
ON CONFLICT (workspace_id, actor_user_id, request_id) DO NOTHING
RETURNING *"""
BY_KEY = """
SELECT * FROM action_audit_log
WHERE workspace_id = $1 AND actor_user_id = $2 AND request_id = $3"""
GET = "SELECT * FROM action_audit_log WHERE workspace_id = $1 AND action_id = $2"
# NO KEY UPDATE, not UPDATE: it still serialises rollbacks of one action, but does not
# block the foreign-key checks (KEY SHARE) of rows that reference the original (another
# rollback's pending row, the events of either), which need not wait for this one.
LOCK_FOR_ROLLBACK = """
SELECT * FROM action_audit_log WHERE workspace_id = $1 AND action_id = $2
FOR NO KEY UPDATE"""
# Only a row that is not final yet: a concurrent finisher wins (the trigger would refuse anyway).
FAIL = """
UPDATE action_audit_log
SET status = 'failed', error_message = $2, error_details = $3, completed_at = clock_timestamp()
WHERE action_id = $1 AND status IN ('pending', 'in_progress') RETURNING *"""
MARK_ROLLED_BACK = """
UPDATE action_audit_log
SET status = 'rolled_back', rollback_action_id = $2, rolled_back_at = clock_timestamp()
WHERE action_id = $1 RETURNING *"""
# Denials are counted and inserted under one lock per (workspace, subject), held to the end
# of the transaction: concurrent denials of one subject are counted one after the other, by
# every replica. The two-key form keeps it apart from the actions' bigint locks.
LOCK_DENIALS = "SELECT pg_advisory_xact_lock(1684368750, hashtext($1::uuid::text || '/' || $2))"
# The wait until the oldest of the last $4 denials leaves the window of $3 seconds, if there
# are that many in it (idx_action_audit_log_actor: a range scan of one subject's rows).
DENIAL_WAIT = """
SELECT EXTRACT(EPOCH FROM created_at + make_interval(secs => $3) - clock_timestamp())
FROM action_audit_log
WHERE workspace_id = $1 AND actor_user_id = $2 AND status = 'denied'
  AND created_at > clock_timestamp() - make_interval(secs => $3)
ORDER BY created_at DESC
OFFSET $4 - 1 LIMIT 1"""
TARGETS = """
SELECT target_kind, target_key, before, after FROM action_targets
WHERE action_id = $1 ORDER BY target_kind, target_key"""


async def claim(
    conn: Conn, lock_key: int, new: NewAction, created_at: datetime
) -> ActionRecord | None:
    """Insert ``new`` as ``pending`` with its event; None when its key is already taken."""
    event = documents.event_for(new.row(ActionStatus.PENDING, created_at))
    row = await conn.fetchrow(
        CLAIM,
        lock_key,
        *new.insert_args(),
        created_at,
        event[2],
        documents.doc_head(*event, created_at),
        documents.doc_tail(new.workspace_id),
        names.NOTIFY_CHANNEL,
    )
    return ActionRecord.maybe(row)


async def complete(
    conn: Conn,
    new: NewAction,
    started_at: datetime,
    completed_at: datetime,
    result: Any,
    changes: Sequence[Change],
    chained: Sequence[events.Event],
) -> ActionRecord | None:
    """Mark the claimed action ``in_progress`` then ``completed`` with ``result``, write its
    ``action_targets`` and append ``chained``; the final row.
    """
    row = await conn.fetchrow(
        COMPLETE,
        new.action_id,
        started_at,
        completed_at,
        result,
        [c.kind for c in changes],
        [c.key for c in changes],
        [c.before for c in changes],
        [c.after for c in changes],
        *events.append_args(new.workspace_id, chained, completed_at),
    )
    return ActionRecord.maybe(row)


@dataclass(frozen=True)
class Final:
    """How an action ended, as :func:`record` stores it.

    Attributes:
        status: ``completed``, or ``failed`` (then ``result`` is None and ``error_*`` set).
        started_at: When its effect began (None for a failure recorded after a rollback).
        completed_at: When it ended.
        result: The stored ``result``.
        error_message: The failure's message.
        error_details: The error a repeat of the request is answered with.
    """

    status: ActionStatus
    started_at: datetime | None
    completed_at: datetime
    result: Any = None
    error_message: str | None = None
    error_details: Row | None = None


async def record(
    conn: Conn,
    new: NewAction,
    created_at: datetime,
    final: Final,
    changes: Sequence[Change],
    chained: Sequence[tuple[events.Event, datetime]],
) -> ActionRecord | None:
    """Insert ``new`` as ``final`` with its ``action_targets`` and append ``chained`` (each
    event with its time); None, having written nothing, when its key is already taken.

    Each event goes as its hashed document only (serialised once): the database reads the
    stored event back from it.
    """
    details = None if final.error_details is None else dict(final.error_details)
    row = await conn.fetchrow(
        RECORD,
        *new.insert_args(),
        final.status,
        created_at,
        final.started_at,
        final.completed_at,
        final.result,
        final.error_message,
        details,
        [c.kind for c in changes],
        [c.key for c in changes],
        [c.before for c in changes],
        [c.after for c in changes],
        [documents.doc_head(*event, at) for event, at in chained],
        documents.doc_tail(new.workspace_id),
        names.NOTIFY_CHANNEL,
    )
    return ActionRecord.maybe(row)


async def fail(
    conn: Conn,
    workspace_id: uuid.UUID,
    action_id: uuid.UUID,
    error_message: str,
    error_details: Row,
) -> ActionRecord | None:
    """Mark a pending/in_progress action ``failed`` with its event; None if already final."""
    async with conn.transaction():
        row = await conn.fetchrow(FAIL, action_id, error_message, dict(error_details))
        if row is not None:
            await events.append(conn, workspace_id, [documents.event_for(row)])
    return ActionRecord.maybe(row)


async def record_denied(
    conn: Conn, new: NewAction, error_message: str, error_details: Row
) -> ActionRecord | None:
    """Insert ``new`` as ``denied`` with its event (in the caller's transaction); None when
    its key is already taken.
    """
    row = await conn.fetchrow(INSERT_DENIED, *new.insert_args(), error_message, dict(error_details))
    if row is not None:
        await events.append(conn, new.workspace_id, [documents.event_for(row)])
    return ActionRecord.maybe(row)


async def lock_denials(conn: Conn, workspace_id: uuid.UUID, subject: str) -> None:
    """Take the subject's denial lock in the workspace until the transaction ends."""
    await conn.execute(LOCK_DENIALS, workspace_id, subject)


async def denial_wait(
    conn: Conn, workspace_id: uuid.UUID, subject: str, window_s: int, per_window: int
) -> float | None:
    """Seconds until the subject may be denied again, when ``per_window`` denials already
    fall in the last ``window_s`` seconds; None when it is under the limit.
    """
    wait = await conn.fetchval(DENIAL_WAIT, workspace_id, subject, window_s, per_window)
    return None if wait is None else float(wait)


async def find_by_key(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, subject: str, request_id: str
) -> ActionRecord | None:
    """The row recorded under this idempotency key, if any."""
    row = await conn.fetchrow(BY_KEY, workspace_id, subject, request_id)
    return ActionRecord.maybe(row)


async def get(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, action_id: uuid.UUID
) -> ActionRecord | None:
    """The action's row, if the workspace has it."""
    row = await conn.fetchrow(GET, workspace_id, action_id)
    return ActionRecord.maybe(row)


async def lock_for_rollback(
    conn: Conn, workspace_id: uuid.UUID, action_id: uuid.UUID
) -> ActionRecord | None:
    """The action's row, locked against other rollbacks to the end of the transaction."""
    row = await conn.fetchrow(LOCK_FOR_ROLLBACK, workspace_id, action_id)
    return ActionRecord.maybe(row)


async def mark_rolled_back(
    conn: Conn, action_id: uuid.UUID, rollback_id: uuid.UUID
) -> ActionRecord | None:
    """Mark a completed action ``rolled_back`` by ``rollback_id``; the updated row."""
    row = await conn.fetchrow(MARK_ROLLED_BACK, action_id, rollback_id)
    return ActionRecord.maybe(row)


async def targets(conn: Conn, action_id: uuid.UUID) -> list[asyncpg.Record]:
    """The ``action_targets`` rows of an action (kind, key, before, after), in key order."""
    return list(await conn.fetch(TARGETS, action_id))
