"""A long, valid, hash-chained history for the growth table (``audit verify``, WatchActions).

The same shape as tests/events/bighistory.py (what the service records for a pause of
one agent: a completed audit row, its ``action_targets`` row, and three events —
pending, in_progress, completed with the targets' summary — chained into the
workspace's hash chain), made faster for a million events: the snapshots come from
:func:`documents.snapshot` and the hashes from the writer's own
:func:`documents.doc_head` and :func:`documents.chain_hash`, but with orjson's canonical
form (:func:`chain.fast_canonical`, the verifier's first try; these payloads hold no
float, where the two forms could differ), and the next chunk is made in a thread while
PostgreSQL stores the last one. Written with COPY as the administrator, past the guard
triggers (test data, not actions of the service), in chunks inside one transaction that
holds the chain head. The bench then runs ``audit verify`` over it and refuses any
finding, so a history that does not verify cannot produce a figure.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.actions import store
from services.actions.audit import documents
from services.actions.audit.chain import fast_canonical
from services.actions.db import Conn

EVENTS_PER_ACTION = 3
# Actions per COPY (three times as many events).
CHUNK = 10_000
TARGET_AGENT = "agent-1"
_ROW_COLUMNS = (
    "action_id",
    "workspace_id",
    "action_type",
    "scope",
    "target_id",
    "action_params",
    "reason",
    "actor_user_id",
    "actor_role",
    "status",
    "result",
    "can_rollback",
    "request_id",
    "request_fingerprint",
    "policy_version",
    "decision_id",
    "created_at",
    "started_at",
    "completed_at",
)
_JSON_COLUMNS = ("action_params", "result")
_TARGET_COLUMNS = ("action_id", "target_kind", "target_key", "before", "after")
_EVENT_COLUMNS = (
    "workspace_id",
    "seq",
    "action_id",
    "event_type",
    "payload",
    "created_at",
    "prev_hash",
    "hash",
)
_BEFORE = {"status": "active", "paused_until": None}
_AFTER = {"status": "paused", "paused_until": None}


def _pending(workspace: uuid.UUID, action_id: uuid.UUID, i: int, at: datetime) -> dict[str, Any]:
    """The audit row of synthetic action ``i`` as it is first recorded."""
    return {
        "action_id": action_id,
        "workspace_id": workspace,
        "action_type": "pause_agent",
        "scope": "agent",
        "target_id": TARGET_AGENT,
        "action_params": {"duration_minutes": 30},
        "reason": f"synthetic history {i}",
        "actor_user_id": "bench-user",
        "actor_role": "operator",
        "status": "pending",
        "result": None,
        "error_message": None,
        "can_rollback": True,
        "rollback_action_id": None,
        "rollback_of_action_id": None,
        "request_id": f"growth-{action_id.hex}",
        "request_fingerprint": "growth",
        "policy_version": "v1",
        "decision_id": f"decision-{i}",
        "trace_id": None,
        "created_at": at,
        "started_at": None,
        "completed_at": None,
        "rolled_back_at": None,
    }


@dataclass
class _Chunk:
    """The rows of one COPY: audit rows, targets and events."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    targets: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class _Chain:
    """The workspace chain, extended event by event as the writer extends it."""

    workspace: uuid.UUID
    seq: int
    prev: str
    tail: bytes = b""

    def __post_init__(self) -> None:
        self.tail = documents.doc_tail(self.workspace)

    def event(self, row: dict[str, Any], extra: dict[str, Any] | None) -> tuple[Any, ...]:
        """The event announcing ``row``'s status, chained; its COPY record."""
        action_id, event_type, payload = documents.event_for(row)
        if extra is not None:
            payload["targets"] = extra
        at = row["created_at"]
        self.seq += 1
        head = documents.doc_head(action_id, event_type, payload, at, fast_canonical)
        digest = documents.chain_hash(self.prev, head, self.seq, self.tail)
        record = (
            self.workspace,
            self.seq,
            action_id,
            event_type,
            fast_canonical(payload).decode(),
            at,
            self.prev,
            digest,
        )
        self.prev = digest
        return record


def _actions(chain: _Chain, first: int, count: int, start: datetime) -> _Chunk:
    """``count`` whole actions, numbered from ``first``, appended to ``chain``."""
    summary = documents.targets_summary([("agent", TARGET_AGENT, _BEFORE, _AFTER)])
    result = {"count": 1, "agents": [TARGET_AGENT]}
    before, after = orjson.dumps(_BEFORE).decode(), orjson.dumps(_AFTER).decode()
    chunk = _Chunk()
    for i in range(first, first + count):
        action_id = uuid.uuid4()
        at = start + timedelta(microseconds=i)
        pending = _pending(chain.workspace, action_id, i, at)
        started = {**pending, "status": "in_progress", "started_at": at}
        final = {**started, "status": "completed", "result": result, "completed_at": at}
        chunk.events.append(chain.event(pending, None))
        chunk.events.append(chain.event(started, None))
        chunk.events.append(chain.event(final, summary))
        chunk.rows.append(
            tuple(
                orjson.dumps(final[c]).decode() if c in _JSON_COLUMNS else final[c]
                for c in _ROW_COLUMNS
            )
        )
        chunk.targets.append((action_id, "agent", TARGET_AGENT, before, after))
    return chunk


async def _copy(conn: Conn, chunk: _Chunk) -> None:
    await conn.copy_records_to_table("action_audit_log", records=chunk.rows, columns=_ROW_COLUMNS)
    await conn.copy_records_to_table(
        "action_targets", records=chunk.targets, columns=_TARGET_COLUMNS
    )
    await conn.copy_records_to_table("action_events", records=chunk.events, columns=_EVENT_COLUMNS)


async def append_actions(conn: Conn, workspace: uuid.UUID, actions: int) -> int:
    """Append ``actions`` whole actions (three events each) to the workspace's chain.

    Args:
        conn: An administrator's connection (the guard triggers are bypassed); the
            caller analyses the tables afterwards.
        workspace: A workspace with a chain head (every workspace has one).
        actions: How many actions to append after the chain's current head.

    Returns:
        The seq of the chain's new last event.
    """
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        head = await store.events.lock_head(conn, workspace)
        if head is None:
            raise RuntimeError(f"workspace {workspace} has no chain head")
        chain = _Chain(workspace, int(head["last_seq"]), str(head["last_hash"]))
        first = chain.seq // EVENTS_PER_ACTION
        start = datetime.now(UTC) - timedelta(days=1)
        # The next chunk is made in a thread while PostgreSQL stores this one.
        offsets = range(0, actions, CHUNK)
        pending: asyncio.Future[_Chunk] | None = None
        for offset in offsets:
            count = min(CHUNK, actions - offset)
            made = (
                _actions(chain, first + offset, count, start) if pending is None else await pending
            )
            following = offset + CHUNK
            pending = None
            if following < actions:
                size = min(CHUNK, actions - following)
                pending = asyncio.ensure_future(
                    asyncio.to_thread(_actions, chain, first + following, size, start)
                )
            await _copy(conn, made)
        await conn.execute(
            "UPDATE audit_chain_heads SET last_seq = $2, last_hash = $3 WHERE workspace_id = $1",
            workspace,
            chain.seq,
            chain.prev,
        )
    return chain.seq


def actions_for(events: int, already: int) -> int:
    """Whole actions to append so that a chain of ``already`` events reaches ``events``.

    Args:
        events: The chain length wanted (at least; actions come in threes).
        already: The chain's length now.

    Returns:
        How many actions to append (0 when the chain is long enough).
    """
    return max(0, -(-(events - already) // EVENTS_PER_ACTION))
