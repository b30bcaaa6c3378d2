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
import csv
import io
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.actions import store
from services.common.names import ID_PATTERN, ID_RULE

MAX_DEPARTMENT_NAME = 200
REQUIRED = ("workspace_id", "department_id", "agent_id")
OPTIONAL = ("department_name",)


class InventoryError(ValueError):
    """The file cannot be imported; ``messages`` are ``file:line: message`` lines."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


@dataclass(frozen=True)
class InventoryRow:
    """One agent line of the inventory file."""

    line: int
    workspace_id: uuid.UUID
    department_id: str
    agent_id: str
    department_name: str | None = None


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


def parse_workspace_id(text: str) -> uuid.UUID:
    """A workspace id in canonical UUID form; raise ValueError otherwise."""
    value = uuid.UUID(text)
    if str(value) != text.lower():  # refuse braces, urn: prefixes and missing dashes
        raise ValueError(f"{text!r} is not a canonical UUID")
    return value


def read_inventory(path: Path, *, workspace_id: uuid.UUID | None = None) -> list[InventoryRow]:
    """Read and validate the file; raise InventoryError listing every problem."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError([f"{name}: cannot read: {exc}"]) from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[InventoryRow] = []
    try:
        header = [h.strip() for h in next(reader, [])]
        errors = _check_header(name, header, with_workspace=workspace_id is not None)
        if errors:
            raise InventoryError(errors)
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            row = _parse_row(name, reader.line_num, header, values, workspace_id, errors)
            if row is not None:
                rows.append(row)
    except csv.Error as exc:
        raise InventoryError([f"{name}:{reader.line_num}: malformed CSV: {exc}"]) from exc
    errors.extend(_check_consistency(name, rows))
    if errors:
        raise InventoryError(errors)
    return rows


def _check_header(name: str, header: list[str], *, with_workspace: bool) -> list[str]:
    required = REQUIRED[1:] if with_workspace else REQUIRED
    if not header:
        return [f"{name}:1: empty file; the first line names the columns {','.join(required)}"]
    errors = [
        f"{name}:1: missing column {c!r} (expected {','.join(required)}[,department_name])"
        for c in required
        if c not in header
    ]
    errors += [f"{name}:1: unknown column {c!r}" for c in header if c not in (*REQUIRED, *OPTIONAL)]
    errors += [f"{name}:1: column {c!r} appears twice" for c in set(header) if header.count(c) > 1]
    return errors


def _parse_row(
    name: str,
    line: int,
    header: list[str],
    values: list[str],
    workspace_id: uuid.UUID | None,
    errors: list[str],
) -> InventoryRow | None:
    where = f"{name}:{line}"
    if len(values) != len(header):
        errors.append(f"{where}: expected {len(header)} fields, found {len(values)}")
        return None
    fields = {h: v.strip() for h, v in zip(header, values, strict=True)}
    before = len(errors)
    workspace = workspace_id
    if "workspace_id" in fields:
        try:
            workspace = parse_workspace_id(fields["workspace_id"])
        except ValueError:
            errors.append(f"{where}: workspace_id {fields['workspace_id']!r} is not a UUID")
        else:
            if workspace_id is not None and workspace != workspace_id:
                errors.append(
                    f"{where}: workspace_id {fields['workspace_id']} differs from "
                    f"--workspace {workspace_id}"
                )
    for column in ("department_id", "agent_id"):
        if not ID_PATTERN.fullmatch(fields[column]):
            errors.append(f"{where}: {column} {fields[column]!r} {ID_RULE}")
    department_name = fields.get("department_name") or None
    if department_name is not None and (
        len(department_name) > MAX_DEPARTMENT_NAME or not department_name.isprintable()
    ):
        errors.append(
            f"{where}: department_name must be printable and at most "
            f"{MAX_DEPARTMENT_NAME} characters"
        )
    if len(errors) > before or workspace is None:
        return None
    return InventoryRow(
        line, workspace, fields["department_id"], fields["agent_id"], department_name
    )


def _check_consistency(name: str, rows: Iterable[InventoryRow]) -> list[str]:
    errors: list[str] = []
    agents: dict[tuple[uuid.UUID, str], int] = {}
    names: dict[tuple[uuid.UUID, str], tuple[str, int]] = {}
    for row in rows:
        key = (row.workspace_id, row.agent_id)
        if key in agents:
            errors.append(
                f"{name}:{row.line}: agent {row.agent_id!r} is already listed on line {agents[key]}"
            )
        else:
            agents[key] = row.line
        if row.department_name is None:
            continue
        dept = (row.workspace_id, row.department_id)
        if dept in names and names[dept][0] != row.department_name:
            errors.append(
                f"{name}:{row.line}: department {row.department_id!r} is named "
                f"{names[dept][0]!r} on line {names[dept][1]}"
            )
        names.setdefault(dept, (row.department_name, row.line))
    return errors


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
