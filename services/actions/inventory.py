"""``import-agents``: the platform's agent inventory from a CSV file (docs/architecture.md §6).

The file has a header row and the columns ``workspace_id,department_id,agent_id`` (or,
with ``--workspace ID``, just ``department_id,agent_id``) plus an optional
``department_name``. The import is an idempotent upsert in one transaction:

* unknown departments are created (named ``department_name``, else their id); a given
  ``department_name`` renames an existing department;
* unknown agents are created ``active``; existing agents keep their control state
  (status, pause, generation, last action) and only follow a department change. An agent
  that an earlier ``--prune`` retired and that is listed again becomes ``active``: the
  platform says it exists again, and ``retired`` is the inventory's state, not an action's;
* with ``prune``, agents of the imported workspaces that the file does not list become
  ``retired``. Nothing is ever deleted: the audit log refers to agents by id.

Every problem is reported as ``file:line: message`` and nothing changes while any remains.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.actions import store
from services.actions.inventory_file import (
    InventoryError,
    InventoryRow,
    parse_workspace_id,
    read_inventory,
)


@dataclass(frozen=True)
class ImportResult:
    """What one import changed."""

    listed: int
    inserted: int
    moved: int
    reactivated: int
    retired: int
    departments_created: int
    departments_renamed: int

    @property
    def unchanged(self) -> int:
        """Listed agents that the import left exactly as they were."""
        return self.listed - self.inserted - self.moved - self.reactivated

    def summary(self) -> str:
        """One human line for the CLI."""
        return (
            f"{self.listed} agent(s) listed: {self.inserted} new, {self.moved} moved department, "
            f"{self.reactivated} reactivated, {self.unchanged} unchanged, {self.retired} retired; "
            f"{self.departments_created} department(s) created, "
            f"{self.departments_renamed} renamed"
        )


async def apply_inventory(
    conn: asyncpg.Connection,
    rows: Sequence[InventoryRow],
    *,
    source: str,
    prune: bool = False,
    workspace_id: uuid.UUID | None = None,
) -> ImportResult:
    """Upsert ``rows`` (and prune) in one transaction; raise InventoryError and change nothing.

    Args:
        conn: a connection outside any transaction.
        rows: validated rows (``read_inventory``).
        source: the file name used in error messages.
        prune: retire the agents of the imported workspaces that ``rows`` do not list.
        workspace_id: the workspace of ``--workspace``; prunes it even when ``rows`` is empty.
    """
    workspaces = sorted(
        {r.workspace_id for r in rows} | ({workspace_id} if workspace_id else set())
    )
    if prune and not rows:
        raise InventoryError([f"{source}: lists no agents; refusing to retire every agent"])
    departments = _departments(rows)
    async with conn.transaction():
        known = await store.inventory.known_workspaces(conn, workspaces)
        missing = [
            f"{source}:{_first_line(rows, w)}: workspace {w} does not exist"
            for w in workspaces
            if w not in known
        ]
        if missing:
            raise InventoryError(missing)
        await store.inventory.lock_agents(conn, workspaces)
        created = await store.inventory.create_departments(conn, departments)
        renamed = await store.inventory.rename_departments(conn, departments)
        counts = await store.inventory.upsert_agents(
            conn,
            [r.workspace_id for r in rows],
            [r.agent_id for r in rows],
            [r.department_id for r in rows],
        )
        retired = 0
        if prune:
            retired = await store.inventory.retire_unlisted(
                conn, workspaces, [r.workspace_id for r in rows], [r.agent_id for r in rows]
            )
    return ImportResult(
        listed=len(rows),
        inserted=counts["inserted"],
        moved=counts["moved"],
        reactivated=counts["reactivated"],
        retired=retired,
        departments_created=created,
        departments_renamed=renamed,
    )


def _departments(
    rows: Sequence[InventoryRow],
) -> tuple[list[uuid.UUID], list[str], list[str | None]]:
    named: dict[tuple[uuid.UUID, str], str | None] = {}
    for r in rows:
        key = (r.workspace_id, r.department_id)
        if named.get(key) is None:
            named[key] = r.department_name
    keys = sorted(named)
    return [k[0] for k in keys], [k[1] for k in keys], [named[k] for k in keys]


def _first_line(rows: Sequence[InventoryRow], workspace: uuid.UUID) -> int:
    return next((r.line for r in rows if r.workspace_id == workspace), 1)


async def import_agents(
    dsn: str, path: Path, *, workspace_id: uuid.UUID | None = None, prune: bool = False
) -> ImportResult:
    """Read, validate and apply an inventory file (the ``import-agents`` command)."""
    rows = read_inventory(path, workspace_id=workspace_id)
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_inventory(
            conn, rows, source=str(path), prune=prune, workspace_id=workspace_id
        )
    finally:
        await conn.close()


def run_import(dsn: str, path: Path, *, workspace: str | None, prune: bool) -> int:
    """The ``import-agents`` command: print a summary, or every problem; return the exit code."""
    try:
        workspace_id = parse_workspace_id(workspace) if workspace is not None else None
    except ValueError:
        print(f"--workspace: {workspace!r} is not a workspace UUID", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(import_agents(dsn, path, workspace_id=workspace_id, prune=prune))
    except InventoryError as exc:
        print(*exc.messages, sep="\n", file=sys.stderr)
        print(f"{path}: nothing imported", file=sys.stderr)
        return 1
    print(f"{path}: {result.summary()}")
    return 0
