"""A long, valid synthetic history for measuring ``audit verify``: many whole actions.

Each action is what the service records for a pause of one agent: its audit row
(completed), its ``action_targets`` row, and three events (pending, in_progress,
completed with the targets' summary), hashed into the workspace chain exactly as the
writer hashes them. Written with COPY as the administrator, past the guard triggers (it
is test data, not an action of the service).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.actions import store
from services.actions.audit import documents
from services.actions.db import Conn

EVENTS_PER_ACTION = 3
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


def _row(workspace: uuid.UUID, action_id: uuid.UUID, i: int, at: datetime) -> dict[str, Any]:
    return {
        "action_id": action_id,
        "workspace_id": workspace,
        "action_type": "pause_agent",
        "scope": "agent",
        "target_id": "eng-code-1",
        "action_params": {"duration_minutes": 30},
        "reason": f"synthetic history {i}",
        "actor_user_id": "bob",
        "actor_role": "operator",
        "status": "pending",
        "result": None,
        "error_message": None,
        "can_rollback": True,
        "rollback_action_id": None,
        "rollback_of_action_id": None,
        "request_id": f"synthetic-{action_id.hex}",
        "request_fingerprint": "synthetic",
        "policy_version": "v1",
        "decision_id": f"decision-{i}",
        "trace_id": None,
        "created_at": at,
        "started_at": None,
        "completed_at": None,
        "rolled_back_at": None,
    }


def _lifecycle(
    workspace: uuid.UUID, action_id: uuid.UUID, i: int, at: datetime
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The action's audit row as it is pending, in progress and completed."""
    pending = _row(workspace, action_id, i, at)
    started = {**pending, "status": "in_progress", "started_at": at}
    final = {
        **started,
        "status": "completed",
        "result": {"count": 1, "agents": ["eng-code-1"]},
        "completed_at": at,
    }
    return pending, started, final


@dataclass
class _Chain:
    """The workspace's hash chain, extended event by event as the writer extends it."""

    workspace: uuid.UUID
    seq: int
    prev: str
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def append(self, row: dict[str, Any], targets: dict[str, Any] | None, at: datetime) -> None:
        """Chain the event announcing ``row``'s status (with ``targets``, when given)."""
        action, event_type, payload = documents.event_for(row)
        if targets is not None:
            payload["targets"] = targets
        self.seq += 1
        ws, seq, prev = self.workspace, self.seq, self.prev
        doc = documents.event_document(ws, seq, action, event_type, payload, at)
        digest = documents.event_hash(prev, doc)
        self.events.append((ws, seq, action, event_type, json.dumps(payload), at, prev, digest))
        self.prev = digest


async def _copy(
    conn: Conn,
    rows: list[tuple[Any, ...]],
    targets: list[tuple[Any, ...]],
    events: list[tuple[Any, ...]],
) -> None:
    await conn.copy_records_to_table("action_audit_log", records=rows, columns=_ROW_COLUMNS)
    await conn.copy_records_to_table(
        "action_targets",
        records=targets,
        columns=("action_id", "target_kind", "target_key", "before", "after"),
    )
    await conn.copy_records_to_table("action_events", records=events, columns=_EVENT_COLUMNS)


async def append_synthetic_actions(pool: asyncpg.Pool, workspace: uuid.UUID, actions: int) -> int:
    """Append ``actions`` whole actions to the workspace's chain; returns the events added."""
    target = (
        "agent",
        "eng-code-1",
        {"status": "active", "paused_until": None},
        {"status": "paused", "paused_until": None},
    )
    summary = documents.targets_summary([target])
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        head = await store.events.lock_head(conn, workspace)
        assert head is not None
        chain = _Chain(workspace, int(head["last_seq"]), str(head["last_hash"]))
        rows: list[tuple[Any, ...]] = []
        targets: list[tuple[Any, ...]] = []
        start = datetime.now(UTC)
        for i in range(actions):
            action_id = uuid.uuid4()
            at = start + timedelta(microseconds=i)
            pending, started, final = _lifecycle(workspace, action_id, i, at)
            for row, extra in ((pending, None), (started, None), (final, summary)):
                chain.append(row, extra, at)
            rows.append(
                tuple(
                    json.dumps(final[c]) if c in ("action_params", "result") else final[c]
                    for c in _ROW_COLUMNS
                )
            )
            targets.append(
                (action_id, target[0], target[1], json.dumps(target[2]), json.dumps(target[3]))
            )
        await _copy(conn, rows, targets, chain.events)
        await conn.execute(
            "UPDATE audit_chain_heads SET last_seq = $2, last_hash = $3 WHERE workspace_id = $1",
            workspace,
            chain.seq,
            chain.prev,
        )
    return len(chain.events)
