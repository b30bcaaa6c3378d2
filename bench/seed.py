"""Set-based seeding of the bench database: workspaces, agents and a million audit rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bench.growth_seed import AUDIT_ROWS
from services.actions.db import Conn

_WORKSPACES = """
INSERT INTO workspaces (id, name)
SELECT w, 'bench-' || w::text FROM unnest($1::uuid[]) AS w"""
_DEPARTMENTS = """
INSERT INTO departments (workspace_id, department_id, name)
SELECT w, 'dept-' || d, 'Department ' || d
FROM unnest($1::uuid[]) AS w, generate_series(0, $2 - 1) AS d"""
_AGENTS = """
INSERT INTO agents (workspace_id, agent_id, department_id)
SELECT w, 'agent-' || a, 'dept-' || (a % $3)
FROM unnest($1::uuid[]) AS w, generate_series(0, $2 - 1) AS a"""


def workspace_ids(count: int, tag: int) -> list[uuid.UUID]:
    """Deterministic workspace ids, distinct per ``tag``."""
    return [uuid.UUID(int=(tag << 64) | i, version=4) for i in range(count)]


async def seed_agents(
    conn: Conn, workspaces: list[uuid.UUID], agents: int, departments: int
) -> None:
    """``agents`` agents over ``departments`` departments in each workspace."""
    async with conn.transaction():
        await conn.execute(_WORKSPACES, workspaces)
        await conn.execute(_DEPARTMENTS, workspaces, departments)
        await conn.execute(_AGENTS, workspaces, agents, departments)


async def seed_audit_rows(conn: Conn, workspace: uuid.UUID, rows: int, targets: int) -> None:
    """``rows`` completed audit rows in ``workspace`` over ``targets`` target ids, analysed."""
    # growth_seed's statement, rows 1..rows one second apart back from now (newest first).
    await conn.execute(AUDIT_ROWS, workspace, 1, rows, targets, datetime.now(UTC), timeout=1800)
    await conn.execute("ANALYZE action_audit_log")
