"""Reading an inventory file (``import-agents``): the CSV's header and rows, checked.

The file has a header row and the columns ``workspace_id,department_id,agent_id`` (or,
with ``--workspace ID``, just ``department_id,agent_id``) plus an optional
``department_name``. Every problem is reported as ``file:line: message``; see
:mod:`services.actions.inventory` for what an import does with the rows.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
