"""A long, valid synthetic chain for measuring ``audit verify`` (events of one action)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg

from services.actions import audit

CHUNK = 20_000


async def append_synthetic_events(pool: asyncpg.Pool, workspace: uuid.UUID, count: int) -> None:
    """Append ``count`` valid ``action.completed`` events (copies of the newest) to the chain."""
    async with pool.acquire() as conn, conn.transaction():
        head = await conn.fetchrow(audit.LOCK_CHAIN_HEAD, workspace)
        assert head is not None
        last = await conn.fetchrow(
            "SELECT action_id, payload FROM action_events WHERE workspace_id = $1 AND seq = $2",
            workspace,
            head["last_seq"],
        )
        assert last is not None
        payload = last["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        seq, prev = int(head["last_seq"]), str(head["last_hash"])
        while count > 0:
            rows = []
            for _ in range(min(CHUNK, count)):
                seq += 1
                now = datetime.now(UTC)
                doc = audit.event_document(
                    workspace, seq, last["action_id"], "action.completed", payload, now
                )
                digest = audit.event_hash(prev, doc)
                rows.append(
                    (
                        workspace,
                        seq,
                        last["action_id"],
                        "action.completed",
                        json.dumps(payload),
                        now,
                        prev,
                        digest,
                    )
                )
                prev = digest
            count -= len(rows)
            await conn.copy_records_to_table(
                "action_events",
                records=rows,
                columns=[
                    "workspace_id",
                    "seq",
                    "action_id",
                    "event_type",
                    "payload",
                    "created_at",
                    "prev_hash",
                    "hash",
                ],
            )
        await conn.execute(
            "UPDATE audit_chain_heads SET last_seq = $2, last_hash = $3 WHERE workspace_id = $1",
            workspace,
            seq,
            prev,
        )
