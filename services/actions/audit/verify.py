"""``audit verify`` for one workspace or all: the chain, the signed checkpoints and the
cross-checks, each workspace in one REPEATABLE READ snapshot, streamed through
server-side cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any

import asyncpg

from services.actions import store
from services.actions.audit import documents
from services.actions.audit.chain import MAX_CHAIN_BREAKS, Break, ChainCheck, unreadable
from services.actions.audit.crosscheck import (
    TableSide,
    compare,
    read_tables,
    read_tables_elsewhere,
)
from services.actions.checkpoints import reader
from services.actions.checkpoints.signing import Checkpoint
from services.actions.db import DATABASE_ERRORS, SNAPSHOT, Conn, init_connection

# Findings printed per kind and workspace before the rest are only counted.
MAX_PRINTED = 20


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


async def _classify(conn: Conn, found: Break, row_prev_hash: str) -> Break:
    """Tell a reordered event (it links to a later one) from a rewritten predecessor."""
    if found.kind != "relinked" or found.seq is None:
        return found
    other = await store.events.seq_of_hash(conn, found.workspace_id, row_prev_hash)
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
    async with conn.transaction(**({} if nested else SNAPSHOT)):
        head = await store.events.head(conn, workspace_id)
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
            async for batch in store.events.chain(conn, workspace_id):
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
            compared, unsummarised = await compare(conn, workspace_id, check.actions, side)
            breaks.extend(compared)
        finally:
            if tables is not None:  # a broken chain: the reader ends with the snapshot
                with contextlib.suppress(Exception):
                    await tables
    return WorkspaceResult(
        workspace_id, check.events, last, breaks, unsummarised, check.first_unsigned
    )


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


def _bad_signatures(checkpoints: reader.CheckpointSet, workspace: uuid.UUID | None) -> list[Break]:
    """The checkpoint lines that do not verify, of ``workspace`` (or of every one)."""
    return [
        Break(bad.workspace_id, None, "bad_signature", f"{bad.path}:{bad.line}: {bad.detail}")
        for bad in checkpoints.bad
        if workspace is None or bad.workspace_id in (None, workspace)
    ]


async def _workspaces(
    conn: Conn, workspace: uuid.UUID | None, checkpoints: reader.CheckpointSet | None
) -> list[uuid.UUID]:
    """The workspaces to verify: every one (or ``workspace``) the database or a checkpoint
    knows; one gone from the database entirely is still checked against its checkpoints.
    """
    ids = await store.events.chained_workspaces(conn, workspace)
    if checkpoints is None:
        return ids
    if workspace is None:
        return sorted(set(ids) | set(checkpoints.by_workspace))
    return [workspace] if workspace in checkpoints.by_workspace else ids


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
        for found in _bad_signatures(checkpoints, workspace):
            report.breaks.append(found)
            emit(str(found))
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval(SCHEMA_PRESENT) is not True:
            raise NoSchema("no Fleetward schema here (run migrate?)")
        await init_connection(conn)
        ids = await _workspaces(conn, workspace, checkpoints)
        start = time.perf_counter()
        for workspace_id in ids:
            signed = () if checkpoints is None else checkpoints.by_workspace.get(workspace_id, [])
            try:
                result = await verify_workspace(conn, workspace_id, signed, parallel)
            except DATABASE_ERRORS:
                raise
            except Exception as exc:  # data this verifier cannot read is a finding, not a crash
                found = unreadable(workspace_id, None, "the rest of this workspace", exc)
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
            f"events since {documents.iso(first)} have no checkpoint (more than {max_age_s:.0f} s:"
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
