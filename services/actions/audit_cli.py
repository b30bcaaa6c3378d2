"""``python -m services.actions audit verify [--workspace ID] [--checkpoints DIR]``.

See docs/architecture.md §6 ("Audit integrity"). For every workspace, in one REPEATABLE
READ snapshot (so the chain head, the rows and the events belong to one moment, however
much is appended meanwhile) and streaming through server-side cursors (millions of rows
never sit in memory), it:

1. recomputes the hash chain with the writer's own pieces (:func:`audit.doc_head`,
   :func:`audit.doc_tail`, :func:`audit.chain_hash`) and compares its end with
   ``audit_chain_heads``;
2. with ``--checkpoints``, checks that every signed checkpoint (seq, hash) is still on
   the recomputed chain and that the chain reaches the newest one;
3. cross-checks every ``action_audit_log`` row against the newest event of its action
   (the snapshot the chain signs), and ``action_targets`` against the summary its
   completed event recorded.

What it finds, by kind (the first break of a chain ends that chain's check; the
cross-checks run on intact chains and report every mismatch):

- ``edited``: an event's content no longer matches its hash;
- ``deleted``: a ``seq`` is missing (a gap);
- ``reordered``: an event does not follow its predecessor, but follows a later one;
- ``relinked``: an event does not link to its predecessor (an event before it was
  rewritten and re-hashed, or one was inserted);
- ``head_mismatch``: the last event is not the one ``audit_chain_heads`` recorded;
- ``forged_suffix``: the chain disagrees with a signed checkpoint: the history up to that
  seq was rewritten and re-hashed (or replaced after a truncation);
- ``truncated_after_checkpoint``: the chain ends before the newest signed checkpoint;
- ``bad_signature``: a checkpoint line does not verify (or names an unknown key);
- ``row_rewritten``: an audit row differs from what the chain says of its action;
- ``targets_missing`` / ``targets_rewritten``: ``action_targets`` rows are gone, or differ
  from (or add to) what the completed event recorded.

Exit codes: 0 all verified; 1 something is broken (each finding is printed); 2 nothing
could be verified (bad input, unknown workspace, unreadable checkpoints, no database).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from services.actions import audit
from services.actions.checkpoints import reader
from services.actions.checkpoints.signing import Checkpoint, CheckpointError
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
SELECT_ROWS = "SELECT * FROM action_audit_log WHERE workspace_id = $1"
SELECT_TARGETS = """
SELECT t.action_id, t.target_kind, t.target_key, t.before, t.after
FROM action_targets AS t JOIN action_audit_log AS a USING (action_id)
WHERE a.workspace_id = $1 ORDER BY t.action_id"""
# Failure paths only.
FIND_BY_HASH = "SELECT seq FROM action_events WHERE workspace_id = $1 AND hash = $2 LIMIT 1"
NEWEST_EVENT = """
SELECT seq, payload FROM action_events WHERE workspace_id = $1 AND action_id = $2
ORDER BY seq DESC LIMIT 1"""

# Where the payload sits in the canonical document head: its last key.
_PAYLOAD_KEY = b',"payload":'
_SEQ_KEY = b',"seq":'
_SNAPSHOT: dict[str, Any] = {"isolation": "repeatable_read", "readonly": True}
# Findings printed per kind and workspace before the rest are only counted.
MAX_PRINTED = 20


@dataclass(frozen=True)
class Break:
    """One finding: a chain's first break, a bad checkpoint, or a row that disagrees."""

    workspace_id: uuid.UUID | None
    seq: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        where = f"workspace={self.workspace_id}" + ("" if self.seq is None else f" seq={self.seq}")
        return f"BROKEN {where} {self.kind}: {self.detail}"


@dataclass(slots=True)
class _Seen:
    """What the chain says of one action: its newest snapshot (as a digest) and the
    ``action_targets`` summary its completed event recorded."""

    newest_seq: int
    fingerprint: bytes
    newest_targets: Any = None
    targets: dict[str, Any] | None = None
    # Completed before completed events carried the summary: its targets cannot be checked.
    unsummarised: bool = False


def _fingerprint(canonical_payload: bytes) -> bytes:
    return hashlib.sha256(canonical_payload).digest()


@dataclass
class ChainCheck:
    """Streaming verification of one chain: feed events in ``seq`` order, then the head."""

    workspace_id: uuid.UUID
    signed: Sequence[Checkpoint] = ()
    events: int = 0
    prev_hash: str = audit.GENESIS_HASH
    expected_seq: int = 1
    actions: dict[uuid.UUID, _Seen] = field(default_factory=dict)
    _next_signed: int = 0
    _tail: bytes = b""

    def __post_init__(self) -> None:
        self._tail = audit.doc_tail(self.workspace_id)

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
        if isinstance(payload, str):  # a connection without the jsonb codec
            payload = json.loads(payload)
        head = audit.doc_head(row["action_id"], row["event_type"], payload, row["created_at"])
        if row["prev_hash"] != self.prev_hash:
            return Break(self.workspace_id, seq, "relinked", "does not link to the previous event")
        digest = audit.chain_hash(self.prev_hash, head, seq, self._tail)
        if row["hash"] != digest:
            return Break(
                self.workspace_id, seq, "edited", "the event's content does not match its hash"
            )
        found = self._against_checkpoints(seq, digest)
        if found is not None:
            return found
        self._remember(row["action_id"], seq, head, payload, row["event_type"])
        self.prev_hash, self.expected_seq = digest, seq + 1
        return None

    def _against_checkpoints(self, seq: int, digest: str) -> Break | None:
        while self._next_signed < len(self.signed) and self.signed[self._next_signed].seq <= seq:
            signed = self.signed[self._next_signed]
            if signed.seq == seq and signed.hash != digest:
                return Break(
                    self.workspace_id,
                    seq,
                    "forged_suffix",
                    f"the checkpoint signed at {audit.iso(signed.time)} (key {signed.key_id}) "
                    f"says seq {seq} has hash {signed.hash[:16]}…, the chain has "
                    f"{digest[:16]}…: the history up to here was rewritten",
                )
            self._next_signed += 1
        return None

    def _remember(
        self, action_id: uuid.UUID, seq: int, head: bytes, payload: Any, event_type: str
    ) -> None:
        # The payload's canonical bytes are a slice of the hashed document: no second dump.
        start = head.index(_PAYLOAD_KEY) + len(_PAYLOAD_KEY)
        fingerprint = _fingerprint(head[start : -len(_SEQ_KEY)])
        targets = payload.get("targets") if isinstance(payload, dict) else None
        seen = self.actions.get(action_id)
        if seen is None:
            seen = self.actions[action_id] = _Seen(seq, fingerprint)
        seen.newest_seq, seen.fingerprint, seen.newest_targets = seq, fingerprint, targets
        if isinstance(targets, dict):
            seen.targets = targets
        elif event_type == "action.completed":
            seen.unsummarised = True

    def finish(self, head: asyncpg.Record | None) -> Break | None:
        """Compare the chain's end with the newest checkpoint and ``audit_chain_heads``."""
        last = self.expected_seq - 1
        if self.signed and self.signed[-1].seq > last:
            newest = self.signed[-1]
            return Break(
                self.workspace_id,
                last + 1,
                "truncated_after_checkpoint",
                f"the chain ends at seq {last}, but a checkpoint signed at "
                f"{audit.iso(newest.time)} saw seq {newest.seq}",
            )
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
class WorkspaceResult:
    """One workspace's verification."""

    workspace_id: uuid.UUID
    events: int
    last_seq: int
    breaks: list[Break]
    # Completed before the completed event carried its targets' summary (not checked).
    unsummarised: int = 0


async def _classify(conn: Conn, found: Break, row_prev_hash: str) -> Break:
    """Tell a reordered event (it links to a later one) from a rewritten predecessor."""
    if found.kind != "relinked" or found.seq is None:
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


async def verify_workspace(
    conn: Conn, workspace_id: uuid.UUID, signed: Sequence[Checkpoint] = ()
) -> WorkspaceResult:
    """Verify one workspace in one snapshot: its chain, its checkpoints, its rows."""
    check = ChainCheck(workspace_id, signed)
    # One snapshot; inside a caller's transaction (a test's), that transaction's.
    nested = conn.is_in_transaction()
    async with conn.transaction(**({} if nested else _SNAPSHOT)):
        async for row in conn.cursor(SELECT_CHAIN, workspace_id, prefetch=BATCH):
            found = check.feed(row)
            if found is not None:
                found = await _classify(conn, found, row["prev_hash"])
                return WorkspaceResult(workspace_id, check.events, found.seq or 0, [found])
        head = await conn.fetchrow(audit.SELECT_HEAD, workspace_id)
        last = check.expected_seq - 1
        found = check.finish(head)
        if found is not None:
            return WorkspaceResult(workspace_id, check.events, last, [found])
        breaks, unsummarised = await _cross_check(conn, workspace_id, check.actions)
    return WorkspaceResult(workspace_id, check.events, last, breaks, unsummarised)


async def _cross_check(
    conn: Conn, workspace_id: uuid.UUID, actions: dict[uuid.UUID, _Seen]
) -> tuple[list[Break], int]:
    """Rows and targets against the chain (inside the caller's snapshot)."""
    breaks: list[Break] = []
    async for record in conn.cursor(SELECT_ROWS, workspace_id, prefetch=BATCH):
        row = _json_decoded(record, "action_params", "result")
        seen = actions.get(row["action_id"])
        snap = audit.snapshot(row)
        if seen is not None and seen.newest_targets is not None:
            snap["targets"] = seen.newest_targets
        if seen is None or _fingerprint(audit.canonical(snap)) != seen.fingerprint:
            breaks.append(await _row_break(conn, workspace_id, row, snap, seen))
    summarised: set[uuid.UUID] = set()
    group: list[tuple[str, str, Any, Any]] = []
    current: uuid.UUID | None = None
    async for record in conn.cursor(SELECT_TARGETS, workspace_id, prefetch=BATCH):
        t = _json_decoded(record, "before", "after")
        if t["action_id"] != current:
            if current is not None:
                breaks.extend(_targets_break(workspace_id, current, group, actions, summarised))
            current, group = t["action_id"], []
        group.append((t["target_kind"], t["target_key"], t["before"], t["after"]))
    if current is not None:
        breaks.extend(_targets_break(workspace_id, current, group, actions, summarised))
    unsummarised = 0
    for action_id, seen in actions.items():
        unsummarised += seen.unsummarised
        if seen.targets is not None and action_id not in summarised and seen.targets.get("count"):
            breaks.append(
                Break(
                    workspace_id,
                    None,
                    "targets_missing",
                    f"action {action_id}: its completed event recorded "
                    f"{seen.targets['count']} action_targets row(s), none are left",
                )
            )
    return breaks, unsummarised


def _json_decoded(record: asyncpg.Record, *columns: str) -> dict[str, Any]:
    """A row whose jsonb ``columns`` are values (on a connection without the codec, text)."""
    row = dict(record)
    for column in columns:
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    return row


def _targets_break(
    workspace_id: uuid.UUID,
    action_id: uuid.UUID,
    rows: list[tuple[str, str, Any, Any]],
    actions: dict[uuid.UUID, _Seen],
    summarised: set[uuid.UUID],
) -> list[Break]:
    summarised.add(action_id)
    seen = actions.get(action_id)
    expected = None if seen is None else seen.targets
    if seen is not None and expected is None and seen.unsummarised:
        return []
    if expected is None:
        return [
            Break(
                workspace_id,
                None,
                "targets_rewritten",
                f"action {action_id}: {len(rows)} action_targets row(s), but no completed "
                "event of it records any",
            )
        ]
    actual = audit.targets_summary(rows)
    if actual == expected:
        return []
    kind = "targets_missing" if actual["count"] < expected.get("count", 0) else "targets_rewritten"
    return [
        Break(
            workspace_id,
            None,
            kind,
            f"action {action_id}: its completed event recorded {expected.get('count')} "
            f"action_targets row(s) (sha256 {str(expected.get('sha256'))[:16]}…), the table "
            f"has {actual['count']} (sha256 {actual['sha256'][:16]}…)",
        )
    ]


async def _row_break(
    conn: Conn,
    workspace_id: uuid.UUID,
    row: dict[str, Any],
    snap: dict[str, Any],
    seen: _Seen | None,
) -> Break:
    action_id = row["action_id"]
    if seen is None:
        return Break(
            workspace_id, None, "row_rewritten", f"action {action_id}: no event records it"
        )
    newest = await conn.fetchrow(NEWEST_EVENT, workspace_id, action_id)
    payload = {} if newest is None else newest["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    fields = sorted(k for k in set(snap) | set(payload) if snap.get(k) != payload.get(k))
    said = "; ".join(
        f"{k}: the chain says {_short(payload.get(k))}, the row says {_short(snap.get(k))}"
        for k in fields[:4]
    )
    return Break(
        workspace_id,
        None,
        "row_rewritten",
        f"action {action_id} differs from its newest event (seq {seen.newest_seq}): {said}",
    )


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class VerifyReport:
    """What a run checked and found."""

    workspaces: int = 0
    events: int = 0
    seconds: float = 0.0
    breaks: list[Break] = field(default_factory=list)
    results: list[WorkspaceResult] = field(default_factory=list)
    checkpoints: reader.CheckpointSet | None = None

    @property
    def events_per_second(self) -> float:
        """Checked events per second of wall time."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def verify(
    dsn: str,
    workspace: uuid.UUID | None = None,
    *,
    checkpoints: reader.CheckpointSet | None = None,
    emit: Callable[[str], Any] = print,
) -> VerifyReport:
    """Verify every chain (or one), against ``checkpoints`` when given; ``emit`` findings."""
    report = VerifyReport(checkpoints=checkpoints)
    if checkpoints is not None:
        for bad in checkpoints.bad:
            if workspace is None or bad.workspace_id in (None, workspace):
                found = Break(
                    bad.workspace_id, None, "bad_signature", f"{bad.path}:{bad.line}: {bad.detail}"
                )
                report.breaks.append(found)
                emit(str(found))
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        if workspace is None:
            ids = [r["id"] for r in await conn.fetch(SELECT_WORKSPACES)]
            if checkpoints is not None:  # a workspace gone from the database entirely
                ids = sorted(set(ids) | set(checkpoints.by_workspace))
        else:
            ids = [r["id"] for r in await conn.fetch(SELECT_WORKSPACE, workspace)]
            if checkpoints is not None and workspace in checkpoints.by_workspace:
                ids = [workspace]
        start = time.perf_counter()
        for workspace_id in ids:
            signed = () if checkpoints is None else checkpoints.by_workspace.get(workspace_id, [])
            result = await verify_workspace(conn, workspace_id, signed)
            report.workspaces += 1
            report.events += result.events
            report.results.append(result)
            _emit_capped(result.breaks, emit)
            report.breaks.extend(result.breaks)
        report.seconds = time.perf_counter() - start
    finally:
        await conn.close()
    return report


def _emit_capped(breaks: list[Break], emit: Callable[[str], Any]) -> None:
    shown: dict[str, int] = {}
    for found in breaks:
        shown[found.kind] = shown.get(found.kind, 0) + 1
        if shown[found.kind] <= MAX_PRINTED:
            emit(str(found))
    for kind, count in shown.items():
        if count > MAX_PRINTED:
            emit(f"  … and {count - MAX_PRINTED} more {kind} in workspace {breaks[0].workspace_id}")


def coverage(report: VerifyReport) -> str:
    """One paragraph on what the checkpoints cover."""
    signed = report.checkpoints
    if signed is None:
        return ""
    covered = [r for r in report.results if signed.newest_seq(r.workspace_id)]
    uncovered = [r for r in report.results if r.last_seq and not signed.newest_seq(r.workspace_id)]
    after = sum(max(0, r.last_seq - signed.newest_seq(r.workspace_id)) for r in covered)
    newest = signed.newest
    lines = [
        f"checkpoints: {signed.count} signed head(s) verified with "
        f"{len(signed.keys)} key(s) from {signed.keys_source}"
        + (f"; newest signed {audit.iso(newest)}" if newest else ""),
        f"  {len(covered)} of {len(report.results)} workspace(s) covered; {after} event(s) "
        "after their newest checkpoint (appended since, not yet signed)",
    ]
    if uncovered:
        lines.append(f"  {len(uncovered)} workspace(s) with events but no checkpoint yet")
    for path in signed.torn:
        lines.append(f"  {path}: incomplete last line ignored (a writer stopped mid-line)")
    return "\n".join(lines)


def run_verify(
    dsn: str,
    workspace: str | None,
    checkpoints_dir: Path | None = None,
    public_keys: Sequence[Path] = (),
) -> int:
    """The CLI: 0 everything verifies; 1 something is broken (each finding is named);
    2 nothing could be verified (bad input, unknown workspace, unreadable checkpoints,
    database unreachable).
    """
    ws: uuid.UUID | None = None
    if workspace is not None:
        try:
            ws = uuid.UUID(workspace)
        except ValueError:
            print(f"--workspace must be a UUID, got {workspace!r}", file=sys.stderr)
            return 2
    signed: reader.CheckpointSet | None = None
    if checkpoints_dir is not None:
        try:
            signed = reader.load(checkpoints_dir, public_keys)
        except (CheckpointError, OSError) as exc:
            print(f"cannot read the checkpoints: {exc}", file=sys.stderr)
            return 2
    elif public_keys:
        print("--public-key needs --checkpoints DIR", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(verify(dsn, ws, checkpoints=signed))
    except DATABASE_ERRORS as exc:
        print(f"cannot reach the database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if ws is not None and report.workspaces == 0:
        print(f"unknown workspace {ws}", file=sys.stderr)
        return 2
    print(
        f"checked {report.events} events in {report.workspaces} workspace(s) in "
        f"{report.seconds:.2f} s ({report.events_per_second:,.0f} events/s): "
        + (f"{len(report.breaks)} finding(s)" if report.breaks else "all chains intact")
        + ", rows and targets cross-checked"
    )
    unsummarised = sum(r.unsummarised for r in report.results)
    if unsummarised:
        print(f"  {unsummarised} action(s) completed before targets were summarised: not checked")
    if signed is not None:
        print(coverage(report))
    return 1 if report.breaks else 0
