"""The workspace chains: ``action_events`` and ``audit_chain_heads``.

Every transaction that changes an action appends its events with :func:`append` (or,
on the hot path, inside the database functions :mod:`.actions` calls), which lock the
workspace's chain head last, number the events, chain their hashes and send exactly one
``NOTIFY`` (docs/architecture.md §5.2, §6). Readers page through a chain by ``seq``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.actions.audit.documents import doc_head, doc_tail
from services.actions.db import Conn, batches
from services.common import names

Event = tuple[uuid.UUID, str, dict[str, Any]]  # (action id, event type, payload)

# Events, the new chain head and the one NOTIFY of the transaction, in one round trip:
# PostgreSQL numbers and hashes them (migrations/0003_chain_append_in_database.sql).
APPEND = """
SELECT fleetward_append_events(
    p_workspace_id => $1, p_action_ids => $2, p_event_types => $3, p_payloads => $4,
    p_created_at => $5, p_doc_heads => $6, p_doc_tail => $7, p_channel => $8)"""
HEAD = "SELECT last_seq, last_hash FROM audit_chain_heads WHERE workspace_id = $1"
LOCK_HEAD = """
SELECT last_seq, last_hash FROM audit_chain_heads WHERE workspace_id = $1 FOR UPDATE"""
HEAD_SEQ = "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1"
MOVED_HEADS = "SELECT workspace_id, last_seq FROM audit_chain_heads WHERE last_seq > 0"
HASH_AT = "SELECT hash FROM action_events WHERE workspace_id = $1 AND seq = $2"
# Read by WatchActions' history and its workspace feeds: (after, until], by seq.
PAGE = """
SELECT seq, event_type, payload, created_at, hash
FROM action_events
WHERE workspace_id = $1 AND seq > $2 AND seq <= $3
ORDER BY seq
LIMIT $4"""
# One action's events, by action_events_by_action (migrations/0001): a handful (pending,
# in_progress, a final one, rolled_back).
OF_ACTION = """
SELECT workspace_id, seq, event_type, payload, created_at, hash
FROM action_events
WHERE action_id = $2 AND workspace_id = $1
ORDER BY seq"""
# The verifier's reads. The payload as jsonb's text: the verifier parses it itself.
CHAIN = """
SELECT seq, action_id, event_type, payload::text AS payload, created_at, prev_hash, hash
FROM action_events WHERE workspace_id = $1 ORDER BY seq"""
SEQ_OF_HASH = "SELECT seq FROM action_events WHERE workspace_id = $1 AND hash = $2 LIMIT 1"
NEWEST_OF_ACTION = """
SELECT seq, payload::text AS payload FROM action_events
WHERE workspace_id = $1 AND action_id = $2
ORDER BY seq DESC LIMIT 1"""
CHAINED_WORKSPACES = """
SELECT id FROM workspaces UNION SELECT workspace_id FROM audit_chain_heads ORDER BY 1"""
CHAINED_WORKSPACE = """
SELECT id FROM workspaces WHERE id = $1
UNION SELECT workspace_id FROM audit_chain_heads WHERE workspace_id = $1"""

# Every event after the last one, in the pages of :data:`PAGE`.
_END = 2**63 - 1


def append_args(
    workspace_id: uuid.UUID, events: Sequence[Event], created_at: datetime
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


async def append(conn: Conn, workspace_id: uuid.UUID, events: Sequence[Event]) -> None:
    """Append events to the workspace chain; call last in the transaction (head locked last).

    One round trip: ``fleetward_append_events`` locks the head, numbers the events,
    hashes them (``sha256(prev_hash || canonical(event))`` from the pieces sent here),
    inserts them, moves the head and sends the transaction's one NOTIFY.
    """
    await conn.execute(APPEND, workspace_id, *append_args(workspace_id, events, datetime.now(UTC)))


async def head(conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID) -> asyncpg.Record | None:
    """The chain head (``last_seq``, ``last_hash``); None for an unknown workspace."""
    row: asyncpg.Record | None = await conn.fetchrow(HEAD, workspace_id)
    return row


async def lock_head(conn: Conn, workspace_id: uuid.UUID) -> asyncpg.Record | None:
    """The chain head, locked ``FOR UPDATE`` to the end of the transaction."""
    row: asyncpg.Record | None = await conn.fetchrow(LOCK_HEAD, workspace_id)
    return row


async def last_seq(conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID) -> int | None:
    """The seq of the workspace's last event (0: none yet; None: unknown workspace)."""
    seq: int | None = await conn.fetchval(HEAD_SEQ, workspace_id)
    return seq


async def moved_heads(conn: Conn | asyncpg.Pool) -> list[asyncpg.Record]:
    """Every workspace with at least one event: ``workspace_id``, ``last_seq``."""
    return list(await conn.fetch(MOVED_HEADS))


async def hash_at(conn: Conn, workspace_id: uuid.UUID, seq: int) -> str | None:
    """The hash of event ``seq`` of the workspace's chain, if it is stored."""
    value: str | None = await conn.fetchval(HASH_AT, workspace_id, seq)
    return value


async def page(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, after: int, until: int | None, limit: int
) -> list[asyncpg.Record]:
    """Up to ``limit`` events with ``after < seq <= until`` (no bound: ``until`` None)."""
    end = _END if until is None else until
    return list(await conn.fetch(PAGE, workspace_id, after, end, limit))


async def of_action(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, action_id: uuid.UUID
) -> list[asyncpg.Record]:
    """One action's events, by seq."""
    return list(await conn.fetch(OF_ACTION, workspace_id, action_id))


def chain(conn: Conn, workspace_id: uuid.UUID) -> AsyncIterator[list[asyncpg.Record]]:
    """The whole chain by seq, in batches (inside a :data:`~services.actions.db.SNAPSHOT`)."""
    return batches(conn, CHAIN, workspace_id)


async def seq_of_hash(conn: Conn, workspace_id: uuid.UUID | None, hash_: str) -> int | None:
    """The seq of an event with this hash, if any."""
    seq: int | None = await conn.fetchval(SEQ_OF_HASH, workspace_id, hash_)
    return seq


async def newest_of_action(
    conn: Conn, workspace_id: uuid.UUID, action_id: uuid.UUID
) -> asyncpg.Record | None:
    """The newest event (``seq``, ``payload`` as text) of an action."""
    row: asyncpg.Record | None = await conn.fetchrow(NEWEST_OF_ACTION, workspace_id, action_id)
    return row


async def chained_workspaces(conn: Conn, workspace_id: uuid.UUID | None) -> list[uuid.UUID]:
    """The workspaces with a chain or a row in ``workspaces`` (or just ``workspace_id``)."""
    if workspace_id is None:
        rows = await conn.fetch(CHAINED_WORKSPACES)
    else:
        rows = await conn.fetch(CHAINED_WORKSPACE, workspace_id)
    return [r[0] for r in rows]
