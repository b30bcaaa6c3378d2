"""The audit tables' statements: rows, targets, events and the chain head.

Every transaction that changes an action appends its events with :func:`append_events`
(or, on the hot path, the database functions :mod:`services.actions.lifecycle` calls),
which lock the workspace's ``audit_chain_heads`` row last, number the events, chain
their hashes and send exactly one ``NOTIFY`` (docs/architecture.md §5, §6). The
verifier reads through :func:`batches` in a :data:`SNAPSHOT` transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.actions.audit.documents import doc_head, doc_tail, event_for
from services.actions.db import Conn, Row
from services.common import names

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

SELECT_BY_KEY = """
SELECT * FROM action_audit_log
WHERE workspace_id = $1 AND actor_user_id = $2 AND request_id = $3"""

SELECT_ACTION = "SELECT * FROM action_audit_log WHERE workspace_id = $1 AND action_id = $2"

# Only a row that is not final yet: a concurrent finisher wins (the trigger would refuse anyway).
MARK_FAILED = """
UPDATE action_audit_log
SET status = 'failed', error_message = $2, error_details = $3, completed_at = clock_timestamp()
WHERE action_id = $1 AND status IN ('pending', 'in_progress') RETURNING *"""

MARK_ROLLED_BACK = """
UPDATE action_audit_log
SET status = 'rolled_back', rollback_action_id = $2, rolled_back_at = clock_timestamp()
WHERE action_id = $1 RETURNING *"""

SELECT_TARGETS = """
SELECT target_kind, target_key, before, after FROM action_targets
WHERE action_id = $1 ORDER BY target_kind, target_key"""

LOCK_CHAIN_HEAD = """
SELECT last_seq, last_hash FROM audit_chain_heads WHERE workspace_id = $1 FOR UPDATE"""

# Events, the new chain head and the one NOTIFY of the transaction, in one round trip:
# PostgreSQL numbers and hashes them (migrations/0003_chain_append_in_database.sql).
APPEND_EVENTS = "SELECT fleetward_append_events($1, $2, $3, $4, $5, $6, $7, $8)"

SELECT_EVENTS = """
SELECT seq, action_id, event_type, payload, created_at, prev_hash, hash
FROM action_events WHERE workspace_id = $1 ORDER BY seq"""

SELECT_HEAD = "SELECT last_seq, last_hash FROM audit_chain_heads WHERE workspace_id = $1"


def append_args(
    workspace_id: uuid.UUID,
    events: Sequence[tuple[uuid.UUID, str, dict[str, Any]]],
    created_at: datetime,
) -> tuple[Any, ...]:
    """Arguments 2..8 of ``fleetward_append_events`` (after the workspace id)."""
    return (
        [e[0] for e in events],
        [e[1] for e in events],
        [e[2] for e in events],
        [created_at] * len(events),
        [doc_head(a, t, p, created_at) for a, t, p in events],
        doc_tail(workspace_id),
        names.NOTIFY_CHANNEL,
    )


async def append_events(
    conn: Conn,
    workspace_id: uuid.UUID,
    events: Sequence[tuple[uuid.UUID, str, dict[str, Any]]],
) -> None:
    """Append events to the workspace chain; call last in the transaction (head locked last).

    One round trip: ``fleetward_append_events`` locks the head, numbers the events,
    hashes them (``sha256(prev_hash || canonical(event))`` from the pieces sent here),
    inserts them, moves the head and sends the transaction's one NOTIFY.
    """
    await conn.execute(
        APPEND_EVENTS, workspace_id, *append_args(workspace_id, events, datetime.now(UTC))
    )


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


BATCH = 5000

SNAPSHOT: dict[str, Any] = {"isolation": "repeatable_read", "readonly": True}


async def batches(conn: Conn, query: str, *args: Any) -> AsyncIterator[list[asyncpg.Record]]:
    """A server-side cursor's rows, :data:`BATCH` at a time (one await per batch, not per
    row: on a long chain the per-row awaits cost a fifth of the time).
    """
    cursor = await conn.cursor(query, *args)
    while batch := await cursor.fetch(BATCH):
        yield batch
