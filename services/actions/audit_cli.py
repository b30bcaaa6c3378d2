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

What it finds, by kind (a chain is checked on past a break, from what is stored, up to
1,000 breaks; the cross-checks always run and report every mismatch):

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
  from (or add to) what the completed event recorded;
- ``unsigned_events``: with ``--checkpoints``, events older than ``--max-unsigned-age``
  (600 s) that no checkpoint covers (the writer was stopped or blocked);
- ``undecodable``: stored data the verifier cannot read (the rest of that workspace is
  unchecked).

Exit codes: 0 all verified; 1 something is broken (each finding is printed); 2 nothing
could be verified (bad input, unknown workspace, unreadable checkpoints, no database).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import asyncpg
import orjson

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
# The payload as jsonb's text: parsed here, by orjson first and by the standard library
# (the writer's reader) whenever the fast result does not reproduce the stored hash.
SELECT_CHAIN = """
SELECT seq, action_id, event_type, payload::text AS payload, created_at, prev_hash, hash
FROM action_events WHERE workspace_id = $1 ORDER BY seq"""
# The columns of audit.snapshot, nothing else.
_ROW_COLUMNS = """
action_id, workspace_id, action_type, scope, target_id, action_params::text AS action_params,
reason, status, result::text AS result, error_message, actor_user_id, actor_role,
can_rollback, rollback_action_id, rollback_of_action_id, policy_version, decision_id,
trace_id, request_id, created_at, started_at, completed_at, rolled_back_at"""
SELECT_ROWS = f"SELECT {_ROW_COLUMNS} FROM action_audit_log WHERE workspace_id = $1"
SELECT_TARGETS = """
SELECT t.action_id, t.target_kind, t.target_key, t.before::text AS before,
       t.after::text AS after
FROM action_targets AS t JOIN action_audit_log AS a USING (action_id)
WHERE a.workspace_id = $1 ORDER BY t.action_id"""
# Failure paths only.
SELECT_ROW = (
    f"SELECT {_ROW_COLUMNS} FROM action_audit_log WHERE workspace_id = $1 AND action_id = $2"
)
SELECT_TARGETS_OF = """
SELECT target_kind, target_key, before::text AS before, after::text AS after
FROM action_targets WHERE action_id = $1"""
FIND_BY_HASH = "SELECT seq FROM action_events WHERE workspace_id = $1 AND hash = $2 LIMIT 1"
NEWEST_EVENT = """
SELECT seq, payload::text AS payload FROM action_events
WHERE workspace_id = $1 AND action_id = $2
ORDER BY seq DESC LIMIT 1"""

# Where the payload sits in the canonical document head: its last key.
_PAYLOAD_KEY = b',"payload":'
_SEQ_KEY = b',"seq":'
_TARGETS_KEY = b',"targets":'
_SNAPSHOT: dict[str, Any] = {"isolation": "repeatable_read", "readonly": True}
_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+-[0-9]+$")
# Chain breaks recorded per workspace (a rewritten chain breaks at every event).
MAX_CHAIN_BREAKS = 1000
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
    ``action_targets`` summary its completed event recorded.
    """

    newest_seq: int
    fingerprint: bytes  # of the newest payload without its "targets"
    targets: dict[str, Any] | None = None
    # Completed before completed events carried the summary: its targets cannot be checked.
    unsummarised: bool = False


def _fingerprint(canonical_payload: bytes) -> bytes:
    return hashlib.sha256(canonical_payload).digest()


def fast_canonical(value: Any) -> bytes:
    """:func:`audit.canonical`'s form made by orjson, five to ten times faster.

    For what jsonb holds (objects, arrays, strings, integers, booleans, null) the bytes
    are the same; a float may be written differently. So this is only ever a first try:
    wherever its result disagrees with a stored hash or fingerprint, the verifier
    recomputes with :func:`audit.canonical`, the writer's own function, which decides.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits
        return audit.canonical(value)


def fast_loads(text: str) -> Any:
    """Parse JSON with orjson, or the standard library for what orjson refuses. A first
    try like :func:`fast_canonical`: orjson may round an extreme float differently, so a
    disagreement is settled by ``json.loads``, as the service reads.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass
class ChainCheck:
    """Streaming verification of one chain: feed events in ``seq`` order, then the head."""

    workspace_id: uuid.UUID
    signed: Sequence[Checkpoint] = ()
    events: int = 0
    prev_hash: str = audit.GENESIS_HASH
    expected_seq: int = 1
    actions: dict[uuid.UUID, _Seen] = field(default_factory=dict)
    # The oldest time of an event past the newest checkpoint (None: all covered).
    first_unsigned: datetime | None = None
    _next_signed: int = 0
    _newest_signed: int = 0
    _tail: bytes = b""

    def __post_init__(self) -> None:
        self._tail = audit.doc_tail(self.workspace_id)
        self._newest_signed = self.signed[-1].seq if self.signed else 0

    def feed(self, row: asyncpg.Record) -> list[Break]:
        """Check the next event; every finding it has. Feeding goes on after a finding, from
        what is stored (a gap's next event, a broken link, the stored hash), so one bad
        event cannot hide what comes after it, nor another finding of its own.
        """
        self.events += 1
        seq = int(row["seq"])
        found: list[Break] = []
        if seq != self.expected_seq:
            missing = f"{self.expected_seq}" + (
                f"..{seq - 1}" if seq - 1 > self.expected_seq else ""
            )
            found.append(
                Break(self.workspace_id, self.expected_seq, "deleted", f"seq {missing} missing")
            )
        elif row["prev_hash"] != self.prev_hash:
            found.append(
                Break(self.workspace_id, seq, "relinked", "does not link to the previous event")
            )
        link = row["prev_hash"]
        try:
            head, payload, encode, digest = self._hash(row, seq, link)
        except (ValueError, RecursionError) as exc:
            found.append(_unreadable(self.workspace_id, seq, f"event seq {seq}", exc))
        else:
            if row["hash"] != digest:
                found.append(
                    Break(
                        self.workspace_id,
                        seq,
                        "edited",
                        "the event's content does not match its hash",
                    )
                )
            self._remember(row["action_id"], seq, head, payload, row["event_type"], encode)
        # Checkpoints sign stored hashes: compare with what is stored.
        signed = self._against_checkpoints(seq, row["hash"])
        if signed is not None:
            found.append(signed)
        if seq > self._newest_signed:
            created = row["created_at"]
            if self.first_unsigned is None or created < self.first_unsigned:
                self.first_unsigned = created
        self.prev_hash, self.expected_seq = row["hash"], seq + 1
        return found

    def _hash(
        self, row: asyncpg.Record, seq: int, link: str
    ) -> tuple[bytes, Any, Callable[[Any], bytes], str]:
        """The event's document head, payload, encoder and hash: orjson's first, the
        writer's own forms whenever they do not reproduce the stored hash.
        """
        text = row["payload"]
        payload = fast_loads(text)
        head = audit.doc_head(
            row["action_id"], row["event_type"], payload, row["created_at"], fast_canonical
        )
        digest = audit.chain_hash(link, head, seq, self._tail)
        if row["hash"] == digest:
            return head, payload, fast_canonical, digest
        payload = json.loads(text)
        head = audit.doc_head(row["action_id"], row["event_type"], payload, row["created_at"])
        return head, payload, audit.canonical, audit.chain_hash(link, head, seq, self._tail)

    def _against_checkpoints(self, seq: int, digest: str) -> Break | None:
        found = None
        while self._next_signed < len(self.signed) and self.signed[self._next_signed].seq <= seq:
            signed = self.signed[self._next_signed]
            self._next_signed += 1
            if signed.seq == seq and signed.hash != digest and found is None:
                found = Break(
                    self.workspace_id,
                    seq,
                    "forged_suffix",
                    f"the checkpoint signed at {audit.iso(signed.time)} (key {signed.key_id}) "
                    f"says seq {seq} has hash {signed.hash[:16]}…, the chain has "
                    f"{digest[:16]}…: the history up to here was rewritten",
                )
        return found

    def _remember(
        self,
        action_id: uuid.UUID,
        seq: int,
        head: bytes,
        payload: Any,
        event_type: str,
        encode: Callable[[Any], bytes],
    ) -> None:
        # The payload's canonical bytes are a slice of the hashed document: no second dump.
        # Its "targets" summary (the last key but workspace_id, after any nested one) is
        # cut out: a row's snapshot has none, and the targets are compared on their own.
        start = head.index(_PAYLOAD_KEY) + len(_PAYLOAD_KEY)
        body = head[start : -len(_SEQ_KEY)]
        targets = payload.get("targets") if isinstance(payload, dict) else None
        if targets is not None:
            segment = _TARGETS_KEY + encode(targets)
            cut = body.rfind(segment)
            if cut >= 0:
                body = body[:cut] + body[cut + len(segment) :]
        seen = self.actions.get(action_id)
        if seen is None:
            seen = self.actions[action_id] = _Seen(seq, b"")
        seen.newest_seq, seen.fingerprint = seq, _fingerprint(body)
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
    first_unsigned: datetime | None = None


async def _batches(conn: Conn, query: str, *args: Any) -> AsyncIterator[list[asyncpg.Record]]:
    """A server-side cursor's rows, :data:`BATCH` at a time (one await per batch, not per
    row: on a long chain the per-row awaits cost a fifth of the time).
    """
    cursor = await conn.cursor(query, *args)
    while batch := await cursor.fetch(BATCH):
        yield batch


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


@dataclass(frozen=True)
class Parallel:
    """Read the rows and targets of a long chain in a second process, in the same snapshot
    (``pg_export_snapshot``), while this one recomputes the chain: on two cores a
    workspace of 200,000 events takes about the time of its chain alone.
    """

    dsn: str
    executor: Executor
    from_events: int = 50_000


async def verify_workspace(
    conn: Conn,
    workspace_id: uuid.UUID,
    signed: Sequence[Checkpoint] = (),
    parallel: Parallel | None = None,
) -> WorkspaceResult:
    """Verify one workspace in one snapshot: its chain, its checkpoints, its rows."""
    check = ChainCheck(workspace_id, signed)
    # One snapshot; inside a caller's transaction (a test's), that transaction's.
    nested = conn.is_in_transaction()
    async with conn.transaction(**({} if nested else _SNAPSHOT)):
        head = await conn.fetchrow(audit.SELECT_HEAD, workspace_id)
        tables: asyncio.Future[TableSide] | None = None
        if (
            parallel is not None
            and not nested
            and head
            and head["last_seq"] >= parallel.from_events
        ):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            tables = asyncio.get_running_loop().run_in_executor(
                parallel.executor, read_tables_elsewhere, parallel.dsn, snapshot, workspace_id
            )
        breaks: list[Break] = []
        try:
            async for batch in _batches(conn, SELECT_CHAIN, workspace_id):
                for row in batch:
                    for found in check.feed(row):
                        if len(breaks) < MAX_CHAIN_BREAKS:
                            breaks.append(await _classify(conn, found, row["prev_hash"]))
            last = check.expected_seq - 1
            end = check.finish(head)
            if end is not None:
                breaks.append(end)
            side = await tables if tables is not None else await read_tables(conn, workspace_id)
            tables = None
            compared, unsummarised = await _compare(conn, workspace_id, check.actions, side)
            breaks.extend(compared)
        finally:
            if tables is not None:  # a broken chain: the reader ends with the snapshot
                with contextlib.suppress(Exception):
                    await tables
    return WorkspaceResult(
        workspace_id, check.events, last, breaks, unsummarised, check.first_unsigned
    )


@dataclass
class TableSide:
    """What the tables say of each action: the digest of its row's snapshot (by
    :func:`fast_canonical`), the summary of its ``action_targets`` rows, and what could
    not be read (a finding each, never the end of the check).
    """

    rows: dict[uuid.UUID, bytes] = field(default_factory=dict)
    targets: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    unreadable: dict[uuid.UUID, str] = field(default_factory=dict)


async def read_tables(
    conn: Conn, workspace_id: uuid.UUID, loads: Callable[[str], Any] = json.loads
) -> TableSide:
    """Digest every row and summarise every action's targets (in the caller's snapshot);
    jsonb arrives as text and is parsed by ``loads``.
    """
    side = TableSide()
    async for batch in _batches(conn, SELECT_ROWS, workspace_id):
        for record in batch:
            try:
                row = _parsed(record, loads, "action_params", "result")
                side.rows[row["action_id"]] = _fingerprint(fast_canonical(audit.snapshot(row)))
            except (ValueError, RecursionError) as exc:
                side.unreadable[record["action_id"]] = f"its audit row ({_reason(exc)})"
    group: list[tuple[str, str, Any, Any]] = []
    current: uuid.UUID | None = None

    def summarise() -> None:
        if current is not None and current not in side.unreadable:
            try:
                side.targets[current] = audit.targets_summary(group, fast_canonical)
            except (ValueError, RecursionError) as exc:
                side.unreadable[current] = f"its action_targets ({_reason(exc)})"

    async for batch in _batches(conn, SELECT_TARGETS, workspace_id):
        for record in batch:
            if record["action_id"] != current:
                summarise()
                current, group = record["action_id"], []
            try:
                t = _parsed(record, loads, "before", "after")
            except (ValueError, RecursionError) as exc:
                side.unreadable[record["action_id"]] = f"its action_targets ({_reason(exc)})"
                continue
            group.append((t["target_kind"], t["target_key"], t["before"], t["after"]))
    summarise()
    return side


def read_tables_elsewhere(dsn: str, snapshot: str, workspace_id: uuid.UUID) -> TableSide:
    """:func:`read_tables` in another process, inside an exported snapshot."""
    if not _SNAPSHOT_ID.match(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    sys.set_int_max_str_digits(0)  # stored numbers of any length, as in the parent

    async def read() -> TableSide:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction(**_SNAPSHOT):
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                # Fast parsing here; what then disagrees is re-read by the caller, exactly.
                return await read_tables(conn, workspace_id, fast_loads)
        finally:
            await conn.close()

    return asyncio.run(read())


async def _compare(
    conn: Conn, workspace_id: uuid.UUID, actions: dict[uuid.UUID, _Seen], side: TableSide
) -> tuple[list[Break], int]:
    """The tables against the chain; a disagreement is re-checked with the writer's own
    canonical form before it is reported.
    """
    breaks: list[Break] = [
        _unreadable(workspace_id, None, f"action {action_id}: {what}", None)
        for action_id, what in side.unreadable.items()
    ]
    for action_id, digest in side.rows.items():
        seen = actions.get(action_id)
        if seen is not None and digest == seen.fingerprint:
            continue
        record = await conn.fetchrow(SELECT_ROW, workspace_id, action_id)
        if record is None:  # pragma: no cover - read in the same snapshot
            continue
        row = _parsed(record, json.loads, "action_params", "result")
        snap = audit.snapshot(row)
        if seen is not None and _fingerprint(audit.canonical(snap)) == seen.fingerprint:
            continue
        breaks.append(await _row_break(conn, workspace_id, snap, seen, action_id))
    for action_id, summary in side.targets.items():
        breaks.extend(await _targets_break(conn, workspace_id, action_id, summary, actions))
    unsummarised = 0
    for action_id, seen in actions.items():
        unsummarised += seen.unsummarised
        if (
            seen.targets is not None
            and action_id not in side.targets
            and action_id not in side.unreadable
            and seen.targets.get("count")
        ):
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


def _parsed(record: asyncpg.Record, loads: Callable[[str], Any], *columns: str) -> dict[str, Any]:
    """A row whose jsonb ``columns`` (read as text) are parsed by ``loads``."""
    row = dict(record)
    for column in columns:
        if row[column] is not None:
            row[column] = loads(row[column])
    return row


def _reason(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:120]}"


def _unreadable(
    workspace_id: uuid.UUID, seq: int | None, what: str, exc: BaseException | None
) -> Break:
    detail = what if exc is None else f"{what} ({_reason(exc)})"
    return Break(
        workspace_id, seq, "undecodable", f"{detail}: stored data this verifier cannot read"
    )


async def _targets_break(
    conn: Conn,
    workspace_id: uuid.UUID,
    action_id: uuid.UUID,
    actual: dict[str, Any],
    actions: dict[uuid.UUID, _Seen],
) -> list[Break]:
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
                f"action {action_id}: {actual['count']} action_targets row(s), but no "
                "completed event of it records any",
            )
        ]
    if actual != expected:  # the writer's own form decides
        rows = [
            (t["target_kind"], t["target_key"], t["before"], t["after"])
            for t in (
                _parsed(r, json.loads, "before", "after")
                for r in await conn.fetch(SELECT_TARGETS_OF, action_id)
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
    snap: dict[str, Any],
    seen: _Seen | None,
    action_id: uuid.UUID,
) -> Break:
    if seen is None:
        return Break(
            workspace_id, None, "row_rewritten", f"action {action_id}: no event records it"
        )
    newest = await conn.fetchrow(NEWEST_EVENT, workspace_id, action_id)
    try:
        payload = {} if newest is None else json.loads(newest["payload"])
    except (ValueError, RecursionError):
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    payload.pop("targets", None)  # compared on their own
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


class NoSchema(Exception):
    """The database has no Fleetward tables: nothing to verify (exit 2, not "broken")."""


# Every table the verifier reads, by name, in the connection's search path.
SCHEMA_PRESENT = """
SELECT to_regclass('workspaces') IS NOT NULL AND to_regclass('action_events') IS NOT NULL
   AND to_regclass('action_audit_log') IS NOT NULL AND to_regclass('action_targets') IS NOT NULL"""


async def verify(
    dsn: str,
    workspace: uuid.UUID | None = None,
    *,
    checkpoints: reader.CheckpointSet | None = None,
    emit: Callable[[str], Any] = print,
    parallel_from: int | None = 50_000,
    max_unsigned_age_s: float = 600.0,
) -> VerifyReport:
    """Verify every chain (or one), against ``checkpoints`` when given; ``emit`` findings.

    Chains of ``parallel_from`` events or more have their rows and targets read by a
    second process meanwhile (None: never).
    """
    report = VerifyReport(checkpoints=checkpoints)
    executor: ProcessPoolExecutor | None = None
    if parallel_from is not None and (os.cpu_count() or 1) > 1:
        # Started at the first long chain only (spawn: no copy of this process's loop).
        executor = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    parallel = None if executor is None else Parallel(dsn, executor, parallel_from or 0)
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
        if await conn.fetchval(SCHEMA_PRESENT) is not True:
            raise NoSchema("no Fleetward schema here (run migrate?)")
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
            try:
                result = await verify_workspace(conn, workspace_id, signed, parallel)
            except DATABASE_ERRORS:
                raise
            except Exception as exc:  # data this verifier cannot read is a finding, not a crash
                found = _unreadable(workspace_id, None, "the rest of this workspace", exc)
                result = WorkspaceResult(workspace_id, 0, 0, [found])
            if checkpoints is not None:
                result.breaks.extend(_unsigned(result, max_unsigned_age_s))
            report.workspaces += 1
            report.events += result.events
            report.results.append(result)
            _emit_capped(result.breaks, emit)
            report.breaks.extend(result.breaks)
        report.seconds = time.perf_counter() - start
    finally:
        await conn.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return report


def _unsigned(result: WorkspaceResult, max_age_s: float) -> list[Break]:
    """Events older than ``max_age_s`` that no checkpoint covers: the writer was stopped
    or blocked (what it has not signed, it cannot vouch for later).
    """
    first = result.first_unsigned
    if first is None or first > datetime.now(UTC) - timedelta(seconds=max_age_s):
        return []
    return [
        Break(
            result.workspace_id,
            None,
            "unsigned_events",
            f"events since {audit.iso(first)} have no checkpoint (more than {max_age_s:.0f} s:"
            " was the checkpoint writer stopped or blocked?)",
        )
    ]


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
    max_unsigned_age_s: float = 600.0,
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
        # Stored numbers of any length are read (Python caps int parsing at 4,300 digits).
        sys.set_int_max_str_digits(0)
        report = asyncio.run(
            verify(dsn, ws, checkpoints=signed, max_unsigned_age_s=max_unsigned_age_s)
        )
    except NoSchema as exc:
        print(str(exc), file=sys.stderr)
        return 2
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
