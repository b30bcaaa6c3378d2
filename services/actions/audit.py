"""SQL for the audit log and its hash-chained events (ARCHITECTURE §5, §6).

Every transaction that changes an action appends its events with :func:`append_events`,
which locks the workspace's ``audit_chain_heads`` row last, numbers the events, chains
their hashes and sends exactly one ``NOTIFY fleetward_events``.

The hashed document of an event is ``{"workspace_id", "seq", "action_id", "event_type",
"payload", "created_at"}`` (:func:`event_document`); ``hash = sha256(prev_hash ||
canonical(document))`` with canonical JSON (sorted keys, ``(",", ":")``, UTF-8, UTC
ISO-8601 timestamps with microseconds); the first event's ``prev_hash`` is 64 zeros.
:func:`verify_chain` recomputes a chain from the table.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.actions.db import Conn, Row

NOTIFY_CHANNEL = "fleetward_events"
GENESIS_HASH = "0" * 64

INSERT_PENDING = """
INSERT INTO action_audit_log (
    action_id, workspace_id, action_type, scope, target_id, action_params, reason,
    actor_user_id, actor_role, status, can_rollback, rollback_of_action_id, request_id,
    request_fingerprint, policy_version, decision_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13, $14, $15)
ON CONFLICT (workspace_id, actor_user_id, request_id) DO NOTHING
RETURNING *"""

INSERT_DENIED = """
INSERT INTO action_audit_log (
    action_id, workspace_id, action_type, scope, target_id, action_params, reason,
    actor_user_id, actor_role, status, can_rollback, rollback_of_action_id, request_id,
    request_fingerprint, policy_version, decision_id, error_message, error_details,
    completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'denied', $10, $11, $12, $13, $14, $15, $16, $17,
        clock_timestamp())
ON CONFLICT (workspace_id, actor_user_id, request_id) DO NOTHING
RETURNING *"""

# The hot path (lifecycle.run) folds locks into its statements to save round trips:
# INSERT_PENDING_LOCKED takes the action's session advisory lock, claims the key and
# locks the chain head AFTER the row exists (LATERAL on the inserted row), so two
# claims of one key still queue on the unique index before either touches the head.
# Its foreign-key checks (KEY SHARE on the workspace and, for a rollback, the original
# action) run at the END of the statement, after the head is locked: a transaction that
# holds such a row FOR UPDATE and then wants the head would deadlock with it. Lock
# referenced audit rows FOR NO KEY UPDATE (as rollback.py does), never FOR UPDATE.
_CHAIN_HEAD_OF = """
CROSS JOIN LATERAL (
    SELECT last_seq AS chain_last_seq, last_hash AS chain_last_hash
    FROM audit_chain_heads WHERE workspace_id = r.workspace_id FOR UPDATE) AS head"""

INSERT_PENDING_LOCKED = (
    """
WITH claimed AS (
    INSERT INTO action_audit_log (
        action_id, workspace_id, action_type, scope, target_id, action_params, reason,
        actor_user_id, actor_role, status, can_rollback, rollback_of_action_id, request_id,
        request_fingerprint, policy_version, decision_id)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13, $14, $15
    FROM (SELECT pg_advisory_lock($16)) AS session_lock
    ON CONFLICT (workspace_id, actor_user_id, request_id) DO NOTHING
    RETURNING *)
SELECT r.*, head.* FROM claimed AS r"""
    + _CHAIN_HEAD_OF
)

# in_progress, with the transaction's lock_timeout set in the same round trip.
MARK_IN_PROGRESS_WITH_TIMEOUT = """
UPDATE action_audit_log SET status = 'in_progress', started_at = clock_timestamp()
FROM (SELECT set_config('lock_timeout', $2, true)) AS timeout
WHERE action_id = $1 RETURNING action_audit_log.*"""

# completed, its action_targets and the chain head (locked last: the effect has already
# locked its agents and budgets), in one round trip.
MARK_COMPLETED_LOCKED = (
    """
WITH targets AS (
    INSERT INTO action_targets (action_id, target_kind, target_key, before, after)
    SELECT $1, t.kind, t.key, t.before, t.after
    FROM unnest($3::text[], $4::text[], $5::jsonb[], $6::jsonb[]) AS t(kind, key, before, after)
), done AS (
    UPDATE action_audit_log
    SET status = 'completed', result = $2, completed_at = clock_timestamp()
    WHERE action_id = $1 RETURNING *)
SELECT r.*, head.* FROM done AS r"""
    + _CHAIN_HEAD_OF
)

SELECT_BY_KEY = """
SELECT * FROM action_audit_log
WHERE workspace_id = $1 AND actor_user_id = $2 AND request_id = $3"""

SELECT_ACTION = "SELECT * FROM action_audit_log WHERE workspace_id = $1 AND action_id = $2"
# Not for an action other rows reference while the chain head is held (see above).
SELECT_ACTION_FOR_UPDATE = SELECT_ACTION + " FOR UPDATE"

MARK_IN_PROGRESS = """
UPDATE action_audit_log SET status = 'in_progress', started_at = clock_timestamp()
WHERE action_id = $1 RETURNING *"""

MARK_COMPLETED = """
UPDATE action_audit_log SET status = 'completed', result = $2, completed_at = clock_timestamp()
WHERE action_id = $1 RETURNING *"""

# Only a row that is not final yet: a concurrent finisher wins (the trigger would refuse anyway).
MARK_FAILED = """
UPDATE action_audit_log
SET status = 'failed', error_message = $2, error_details = $3, completed_at = clock_timestamp()
WHERE action_id = $1 AND status IN ('pending', 'in_progress') RETURNING *"""

MARK_ROLLED_BACK = """
UPDATE action_audit_log
SET status = 'rolled_back', rollback_action_id = $2, rolled_back_at = clock_timestamp()
WHERE action_id = $1 RETURNING *"""

INSERT_TARGETS = """
INSERT INTO action_targets (action_id, target_kind, target_key, before, after)
SELECT $1, t.kind, t.key, t.before, t.after
FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::jsonb[]) AS t(kind, key, before, after)"""

SELECT_TARGETS = """
SELECT target_kind, target_key, before, after FROM action_targets
WHERE action_id = $1 ORDER BY target_kind, target_key"""

LOCK_CHAIN_HEAD = """
SELECT last_seq, last_hash FROM audit_chain_heads WHERE workspace_id = $1 FOR UPDATE"""

# Events, the new chain head and the one NOTIFY of the transaction, in one round trip.
APPEND_EVENTS = """
WITH appended AS (
    INSERT INTO action_events
        (workspace_id, seq, action_id, event_type, payload, created_at, prev_hash, hash)
    SELECT $1, e.seq, e.action_id, e.event_type, e.payload, e.created_at, e.prev_hash, e.hash
    FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::jsonb[], $6::timestamptz[],
                $7::text[], $8::text[])
         AS e(seq, action_id, event_type, payload, created_at, prev_hash, hash)
), head AS (
    UPDATE audit_chain_heads SET last_seq = $9, last_hash = $10 WHERE workspace_id = $1
)
SELECT pg_notify($11, $1::text)"""

SELECT_EVENTS = """
SELECT seq, action_id, event_type, payload, created_at, prev_hash, hash
FROM action_events WHERE workspace_id = $1 ORDER BY seq"""

SELECT_HEAD = "SELECT last_seq, last_hash FROM audit_chain_heads WHERE workspace_id = $1"


def iso(value: datetime | None) -> str | None:
    """UTC ISO-8601 with microseconds (the canonical timestamp form), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, ``(",", ":")`` separators, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(prev_hash: str, event: Row) -> str:
    """``sha256(prev_hash || canonical(event))`` as hex."""
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


def event_document(
    workspace_id: uuid.UUID,
    seq: int,
    action_id: uuid.UUID,
    event_type: str,
    payload: Any,
    created_at: datetime,
) -> dict[str, Any]:
    """The hashed form of one event."""
    return {
        "workspace_id": str(workspace_id),
        "seq": seq,
        "action_id": str(action_id),
        "event_type": event_type,
        "payload": payload,
        "created_at": iso(created_at),
    }


def snapshot(row: Row) -> dict[str, Any]:
    """An audit row as the JSON payload of its event (the Action at that moment)."""
    roles = [r for r in (row["actor_role"] or "").split(",") if r]
    return {
        "action_id": str(row["action_id"]),
        "workspace_id": str(row["workspace_id"]),
        "action_type": row["action_type"],
        "scope": row["scope"],
        "target_id": row["target_id"],
        "params": row["action_params"],
        "reason": row["reason"],
        "status": row["status"],
        "result": row["result"],
        "error_message": row["error_message"],
        "actor": {"subject": row["actor_user_id"], "roles": roles},
        "can_rollback": row["can_rollback"],
        "rollback_action_id": _str(row["rollback_action_id"]),
        "rollback_of_action_id": _str(row["rollback_of_action_id"]),
        "policy_version": row["policy_version"],
        "decision_id": row["decision_id"],
        "request_id": row["request_id"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "completed_at": iso(row["completed_at"]),
        "rolled_back_at": iso(row["rolled_back_at"]),
    }


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def event_for(row: Row) -> tuple[uuid.UUID, str, dict[str, Any]]:
    """The event announcing ``row``'s current status."""
    return (row["action_id"], f"action.{row['status']}", snapshot(row))


async def append_events(
    conn: Conn,
    workspace_id: uuid.UUID,
    events: Sequence[tuple[uuid.UUID, str, dict[str, Any]]],
) -> None:
    """Append events to the workspace chain; call last in the transaction (head locked last)."""
    head = await conn.fetchrow(LOCK_CHAIN_HEAD, workspace_id)
    if head is None:
        raise RuntimeError(f"workspace {workspace_id} has no audit chain head")
    await append_at_head(conn, workspace_id, head["last_seq"], head["last_hash"], events)


async def append_at_head(
    conn: Conn,
    workspace_id: uuid.UUID,
    last_seq: int,
    last_hash: str,
    events: Sequence[tuple[uuid.UUID, str, dict[str, Any]]],
) -> None:
    """Append events after a chain head this transaction has already locked."""
    seq, prev = int(last_seq), str(last_hash)
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    for action_id, event_type, payload in events:
        seq += 1
        created_at = datetime.now(UTC)
        doc = event_document(workspace_id, seq, action_id, event_type, payload, created_at)
        digest = event_hash(prev, doc)
        for col, value in zip(
            cols, (seq, action_id, event_type, payload, created_at, prev, digest), strict=True
        ):
            col.append(value)
        prev = digest
    await conn.execute(APPEND_EVENTS, workspace_id, *cols, seq, prev, NOTIFY_CHANNEL)


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`verify_chain`."""

    workspace_id: uuid.UUID
    events: int
    ok: bool
    first_broken_seq: int | None = None
    problem: str = ""


async def verify_chain(conn: Conn, workspace_id: uuid.UUID) -> ChainReport:
    """Recompute a workspace's chain; name the first broken ``seq`` (or the head mismatch)."""
    rows = await conn.fetch(SELECT_EVENTS, workspace_id)
    prev, expected = GENESIS_HASH, 1
    for row in rows:
        seq = int(row["seq"])
        payload = row["payload"]
        if isinstance(payload, str):  # a connection without the jsonb codec
            payload = json.loads(payload)
        doc = event_document(
            workspace_id, seq, row["action_id"], row["event_type"], payload, row["created_at"]
        )
        problem = ""
        if seq != expected:
            problem = f"expected seq {expected}, found {seq}"
        elif row["prev_hash"] != prev:
            problem = "prev_hash does not match the previous event's hash"
        elif row["hash"] != event_hash(prev, doc):
            problem = "hash does not match the event's content"
        if problem:
            return ChainReport(workspace_id, len(rows), False, seq, problem)
        prev, expected = row["hash"], seq + 1
    head = await conn.fetchrow(SELECT_HEAD, workspace_id)
    last_seq = expected - 1
    if head is None or int(head["last_seq"]) != last_seq or head["last_hash"] != prev:
        return ChainReport(
            workspace_id,
            len(rows),
            False,
            last_seq + 1,
            "the chain head does not match the last event (an event is missing)",
        )
    return ChainReport(workspace_id, len(rows), True)


async def fail_action(
    conn: Conn,
    workspace_id: uuid.UUID,
    action_id: uuid.UUID,
    error_message: str,
    error_details: Row,
) -> asyncpg.Record | None:
    """Mark a pending/in_progress action ``failed`` with its event; None if already final."""
    async with conn.transaction():
        row: asyncpg.Record | None = await conn.fetchrow(
            MARK_FAILED, action_id, error_message, dict(error_details)
        )
        if row is not None:
            await append_events(conn, workspace_id, [event_for(row)])
    return row
