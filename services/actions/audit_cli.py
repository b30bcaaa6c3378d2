"""``python -m services.actions audit verify [--workspace ID]`` (docs/architecture.md §6).

Recomputes every workspace's hash chain with the same code that appends it
(:func:`services.actions.audit.event_document` and :func:`~services.actions.audit.event_hash`),
streaming each chain through a server-side cursor in batches inside one REPEATABLE READ
snapshot (so the chain head read at the end belongs to the same moment as the events,
however much is appended meanwhile, and millions of rows never sit in memory). It names
the first broken event of every broken workspace and what is wrong with it:

- ``edited``: the event's content no longer matches its hash;
- ``deleted``: a ``seq`` is missing (a gap);
- ``reordered``: an event does not follow its predecessor, but follows a later one;
- ``relinked``: an event does not link to its predecessor (an event before it was
  rewritten and re-hashed, or one was inserted);
- ``head_mismatch``: the last event is not the one ``audit_chain_heads`` recorded (the
  newest event was deleted, or the head was changed).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.actions import audit
from services.actions.db import DATABASE_ERRORS, Conn, init_connection

BATCH = 5000

SELECT_WORKSPACES = """
SELECT id FROM workspaces UNION SELECT workspace_id FROM audit_chain_heads ORDER BY 1"""
SELECT_WORKSPACE = """
SELECT id FROM workspaces WHERE id = $1
UNION SELECT workspace_id FROM audit_chain_heads WHERE workspace_id = $1"""
SELECT_CHAIN = """
SELECT seq, action_id, event_type, payload, created_at, prev_hash, hash
FROM action_events WHERE workspace_id = $1 ORDER BY seq"""
# Failure path only: which event's hash an out-of-place event links to.
FIND_BY_HASH = "SELECT seq FROM action_events WHERE workspace_id = $1 AND hash = $2 LIMIT 1"


@dataclass(frozen=True)
class Break:
    """The first broken event of a workspace chain."""

    workspace_id: uuid.UUID
    seq: int
    kind: str  # edited | deleted | reordered | relinked | head_mismatch
    detail: str

    def __str__(self) -> str:
        return f"BROKEN workspace={self.workspace_id} seq={self.seq} {self.kind}: {self.detail}"


@dataclass
class ChainCheck:
    """Streaming verification of one chain: feed events in ``seq`` order, then the head."""

    workspace_id: uuid.UUID
    events: int = 0
    prev_hash: str = audit.GENESIS_HASH
    expected_seq: int = 1

    def feed(self, row: asyncpg.Record) -> Break | None:
        """Check the next event; a :class:`Break` when it is wrong (then stop feeding)."""
        self.events += 1
        seq = int(row["seq"])
        if seq != self.expected_seq:
            missing = f"{self.expected_seq}" + (
                f"..{seq - 1}" if seq - 1 > self.expected_seq else ""
            )
            return Break(self.workspace_id, self.expected_seq, "deleted", f"seq {missing} missing")
        payload = row["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        doc = audit.event_document(
            self.workspace_id, seq, row["action_id"], row["event_type"], payload, row["created_at"]
        )
        if row["prev_hash"] != self.prev_hash:
            return Break(self.workspace_id, seq, "relinked", "does not link to the previous event")
        if row["hash"] != audit.event_hash(self.prev_hash, doc):
            return Break(
                self.workspace_id, seq, "edited", "the event's content does not match its hash"
            )
        self.prev_hash, self.expected_seq = row["hash"], seq + 1
        return None

    def finish(self, head: asyncpg.Record | None) -> Break | None:
        """Compare the chain's end with ``audit_chain_heads``."""
        last = self.expected_seq - 1
        if head is None:
            return Break(self.workspace_id, last, "head_mismatch", "no audit_chain_heads row")
        head_seq = int(head["last_seq"])
        if head_seq > last:
            return Break(
                self.workspace_id,
                last + 1,
                "head_mismatch",
                f"the chain ends at seq {last} but the head says {head_seq} "
                "(the newest event was deleted)",
            )
        if head_seq != last or head["last_hash"] != self.prev_hash:
            return Break(
                self.workspace_id,
                last,
                "head_mismatch",
                f"the head (seq {head_seq}) does not match the last event (seq {last})",
            )
        return None


@dataclass
class VerifyReport:
    """What a run checked and found."""

    workspaces: int = 0
    events: int = 0
    seconds: float = 0.0
    breaks: list[Break] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        """Checked events per second of wall time."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def _classify(conn: Conn, found: Break, row_prev_hash: str) -> Break:
    """Tell a reordered event (it links to a later one) from a rewritten predecessor."""
    if found.kind != "relinked":
        return found
    other = await conn.fetchval(FIND_BY_HASH, found.workspace_id, row_prev_hash)
    if other is not None and int(other) > found.seq:
        return Break(
            found.workspace_id,
            found.seq,
            "reordered",
            f"it follows seq {other}, not seq {found.seq - 1}",
        )
    return Break(
        found.workspace_id,
        found.seq,
        "relinked",
        f"it does not link to seq {found.seq - 1} (an earlier event was rewritten, "
        "or an event was inserted)",
    )


async def verify_workspace(conn: Conn, workspace_id: uuid.UUID) -> tuple[int, Break | None]:
    """Verify one chain in one snapshot; (events checked, first break or None)."""
    check = ChainCheck(workspace_id)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(SELECT_CHAIN, workspace_id, prefetch=BATCH):
            found = check.feed(row)
            if found is not None:
                return check.events, await _classify(conn, found, row["prev_hash"])
        head = await conn.fetchrow(audit.SELECT_HEAD, workspace_id)
    return check.events, check.finish(head)


async def verify(
    dsn: str, workspace: uuid.UUID | None = None, *, emit: Callable[[str], Any] = print
) -> VerifyReport:
    """Verify every chain (or one); ``emit`` each break as it is found."""
    report = VerifyReport()
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        if workspace is None:
            ids = [r["id"] for r in await conn.fetch(SELECT_WORKSPACES)]
        else:
            ids = [r["id"] for r in await conn.fetch(SELECT_WORKSPACE, workspace)]
        start = time.perf_counter()
        for workspace_id in ids:
            events, found = await verify_workspace(conn, workspace_id)
            report.workspaces += 1
            report.events += events
            if found is not None:
                report.breaks.append(found)
                emit(str(found))
        report.seconds = time.perf_counter() - start
    finally:
        await conn.close()
    return report


def run_verify(dsn: str, workspace: str | None) -> int:
    """The CLI: 0 every chain verifies; 1 a chain is broken (each first break is named);
    2 nothing could be verified (bad input, unknown workspace, database unreachable).
    """
    ws: uuid.UUID | None = None
    if workspace is not None:
        try:
            ws = uuid.UUID(workspace)
        except ValueError:
            print(f"--workspace must be a UUID, got {workspace!r}", file=sys.stderr)
            return 2
    try:
        report = asyncio.run(verify(dsn, ws))
    except DATABASE_ERRORS as exc:
        print(f"cannot reach the database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if ws is not None and report.workspaces == 0:
        print(f"unknown workspace {ws}", file=sys.stderr)
        return 2
    print(
        f"checked {report.events} events in {report.workspaces} workspace(s) in "
        f"{report.seconds:.2f} s ({report.events_per_second:,.0f} events/s): "
        + (f"{len(report.breaks)} broken chain(s)" if report.breaks else "all chains intact")
    )
    return 1 if report.breaks else 0
