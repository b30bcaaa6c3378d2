"""The tables against the chain: every audit row against the newest event of its action,
and ``action_targets`` against the summary its completed event recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.actions import store
from services.actions.audit import documents
from services.actions.audit.chain import (
    Break,
    Seen,
    fast_canonical,
    fast_loads,
    fingerprint,
    reason_of,
    unreadable,
)
from services.actions.db import SNAPSHOT, Conn

_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+-[0-9]+$")


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
    async for batch in store.history.snapshot_rows(conn, workspace_id):
        for record in batch:
            try:
                row = _parsed(record, loads, "action_params", "result")
                side.rows[row["action_id"]] = fingerprint(fast_canonical(documents.snapshot(row)))
            except (ValueError, RecursionError) as exc:
                side.unreadable[record["action_id"]] = f"its audit row ({reason_of(exc)})"
    group: list[tuple[str, str, Any, Any]] = []
    current: uuid.UUID | None = None

    def summarise() -> None:
        if current is not None and current not in side.unreadable:
            try:
                side.targets[current] = documents.targets_summary(group, fast_canonical)
            except (ValueError, RecursionError) as exc:
                side.unreadable[current] = f"its action_targets ({reason_of(exc)})"

    async for batch in store.history.workspace_targets(conn, workspace_id):
        for record in batch:
            if record["action_id"] != current:
                summarise()
                current, group = record["action_id"], []
            try:
                t = _parsed(record, loads, "before", "after")
            except (ValueError, RecursionError) as exc:
                side.unreadable[record["action_id"]] = f"its action_targets ({reason_of(exc)})"
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
            async with conn.transaction(**SNAPSHOT):
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                # Fast parsing here; what then disagrees is re-read by the caller, exactly.
                return await read_tables(conn, workspace_id, fast_loads)
        finally:
            await conn.close()

    return asyncio.run(read())


async def compare(
    conn: Conn, workspace_id: uuid.UUID, actions: dict[uuid.UUID, Seen], side: TableSide
) -> tuple[list[Break], int]:
    """The tables against the chain; a disagreement is re-checked with the writer's own
    canonical form before it is reported.
    """
    breaks: list[Break] = [
        unreadable(workspace_id, None, f"action {action_id}: {what}", None)
        for action_id, what in side.unreadable.items()
    ]
    for action_id, digest in side.rows.items():
        seen = actions.get(action_id)
        if seen is not None and digest == seen.fingerprint:
            continue
        record = await store.history.snapshot_row(conn, workspace_id, action_id)
        if record is None:  # pragma: no cover - read in the same snapshot
            continue
        row = _parsed(record, json.loads, "action_params", "result")
        snap = documents.snapshot(row)
        if seen is not None and fingerprint(documents.canonical(snap)) == seen.fingerprint:
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


async def _targets_break(
    conn: Conn,
    workspace_id: uuid.UUID,
    action_id: uuid.UUID,
    actual: dict[str, Any],
    actions: dict[uuid.UUID, Seen],
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
                for r in await store.history.targets_text(conn, action_id)
            )
        ]
        actual = documents.targets_summary(rows)
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
    seen: Seen | None,
    action_id: uuid.UUID,
) -> Break:
    if seen is None:
        return Break(
            workspace_id, None, "row_rewritten", f"action {action_id}: no event records it"
        )
    newest = await store.events.newest_of_action(conn, workspace_id, action_id)
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
