"""``create-workspace``: a new, empty workspace for a fleet of one's own."""

from __future__ import annotations

import asyncio
import sys
import uuid

import asyncpg

from services.actions.db import DATABASE_ERRORS

MAX_NAME = 200
_INSERT = "INSERT INTO workspaces (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id"
_EXISTING = "SELECT id, name FROM workspaces WHERE id = $1 OR name = $2"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a workspace, or None."""
    if not 1 <= len(name) <= MAX_NAME:
        return f"the name must have 1 to {MAX_NAME} characters"
    if not name.isprintable() or name != name.strip():
        return "the name must be printable, without leading or trailing spaces"
    return None


async def create_workspace(dsn: str, name: str, workspace_id: uuid.UUID) -> uuid.UUID | str:
    """Insert the workspace; its id, or a sentence saying which existing one is in the way."""
    conn = await asyncpg.connect(dsn)
    try:
        created: uuid.UUID | None = await conn.fetchval(_INSERT, workspace_id, name)
        if created is not None:
            return created
        clash = await conn.fetchrow(_EXISTING, workspace_id, name)
    finally:
        await conn.close()
    if clash is None:  # removed again in between: say so rather than guess
        return "the workspace could not be created; try again"
    return f"workspace {clash['id']} named {clash['name']!r} already exists"


def run_create(dsn: str, name: str, workspace_id: str | None) -> int:
    """The CLI: print the new workspace's id and what to do next; exit 1 on a clash, 2 on
    bad input or an unreachable database.
    """
    problem = name_problem(name)
    try:
        wanted = uuid.UUID(workspace_id) if workspace_id else uuid.uuid4()
    except ValueError:
        problem = f"--id must be a UUID, got {workspace_id!r}"
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        outcome = asyncio.run(create_workspace(dsn, name, wanted))
    except DATABASE_ERRORS as exc:
        print(f"cannot reach the database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if isinstance(outcome, str):
        print(outcome, file=sys.stderr)
        return 1
    print(f"created workspace {name!r}: {outcome}")
    print("next:")
    print(f"  agents:  python -m services.actions import-agents FILE.csv --workspace {outcome}")
    print(f"  people:  add to policies/policy.csv lines like   g, alice, admin, {outcome}")
    return 0
