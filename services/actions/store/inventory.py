"""What the platform's inventory writes: workspaces, departments and agents as they exist
(``import-agents``, ``seed-demo``), never their control state.

Agents are locked in the actions' order (workspace, then ``agent_id``;
docs/architecture.md §5.4), so an import and a running action never deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.actions.db import Conn

KNOWN_WORKSPACES = "SELECT id FROM workspaces WHERE id = ANY($1::uuid[])"
LOCK_AGENTS = """
SELECT 1 FROM agents WHERE workspace_id = ANY($1::uuid[])
ORDER BY workspace_id, agent_id FOR UPDATE"""
CREATE_DEPARTMENTS = """
INSERT INTO departments (workspace_id, department_id, name)
SELECT d.workspace_id, d.department_id, coalesce(d.name, d.department_id)
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS d(workspace_id, department_id, name)
ON CONFLICT (workspace_id, department_id) DO NOTHING
RETURNING department_id"""
RENAME_DEPARTMENTS = """
UPDATE departments AS t SET name = d.name
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS d(workspace_id, department_id, name)
WHERE t.workspace_id = d.workspace_id AND t.department_id = d.department_id
  AND d.name IS NOT NULL AND t.name IS DISTINCT FROM d.name"""
# Every CTE sees the snapshot from before the INSERT, so ``old`` is each agent's prior state.
# The counts are exclusive: a retired agent listed again counts as reactivated, moved or not.
UPSERT_AGENTS = """
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
        AS i(workspace_id, agent_id, department_id)
), old AS (
    SELECT a.workspace_id, a.agent_id, a.department_id, a.status
    FROM agents AS a JOIN incoming USING (workspace_id, agent_id)
), upserted AS (
    INSERT INTO agents (workspace_id, agent_id, department_id)
    SELECT workspace_id, agent_id, department_id FROM incoming
    ON CONFLICT (workspace_id, agent_id) DO UPDATE
        SET department_id = EXCLUDED.department_id,
            status = CASE WHEN agents.status = 'retired' THEN 'active' ELSE agents.status END,
            updated_at = now()
        WHERE agents.department_id IS DISTINCT FROM EXCLUDED.department_id
           OR agents.status = 'retired'
    RETURNING workspace_id, agent_id, department_id
)
SELECT count(*) FILTER (WHERE o.agent_id IS NULL) AS inserted,
       count(*) FILTER (WHERE o.department_id IS DISTINCT FROM u.department_id
                          AND o.status <> 'retired') AS moved,
       count(*) FILTER (WHERE o.status = 'retired') AS reactivated
FROM upserted AS u LEFT JOIN old AS o USING (workspace_id, agent_id)"""
RETIRE_UNLISTED = """
UPDATE agents AS a SET status = 'retired', paused_until = NULL, updated_at = now()
WHERE a.workspace_id = ANY($1::uuid[]) AND a.status <> 'retired'
  AND NOT EXISTS (
      SELECT 1 FROM unnest($2::uuid[], $3::text[]) AS f(workspace_id, agent_id)
      WHERE f.workspace_id = a.workspace_id AND f.agent_id = a.agent_id)"""
NAME_WORKSPACE = """
INSERT INTO workspaces (id, name) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name"""
NAME_DEPARTMENTS = """
INSERT INTO departments (workspace_id, department_id, name)
SELECT $1, d.id, d.name FROM unnest($2::text[], $3::text[]) AS d(id, name)
ON CONFLICT (workspace_id, department_id) DO UPDATE SET name = EXCLUDED.name"""
# Existing agents keep their control state.
ADD_AGENTS = """
INSERT INTO agents (workspace_id, agent_id, department_id)
SELECT $1, a.id, a.dept FROM unnest($2::text[], $3::text[]) AS a(id, dept)
ON CONFLICT (workspace_id, agent_id) DO NOTHING"""

Departments = tuple[list[uuid.UUID], list[str], list[str | None]]  # workspace, id, name


async def known_workspaces(conn: Conn, workspace_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these workspaces exist."""
    return {r["id"] for r in await conn.fetch(KNOWN_WORKSPACES, workspace_ids)}


async def lock_agents(conn: Conn, workspace_ids: list[uuid.UUID]) -> None:
    """Lock every agent of these workspaces, in the actions' lock order."""
    await conn.execute(LOCK_AGENTS, workspace_ids)


async def create_departments(conn: Conn, departments: Departments) -> int:
    """Create the unknown departments (named, else by id); how many were created."""
    return len(await conn.fetch(CREATE_DEPARTMENTS, *departments))


async def rename_departments(conn: Conn, departments: Departments) -> int:
    """Give existing departments the names given (None: keep); how many changed."""
    return _row_count(await conn.execute(RENAME_DEPARTMENTS, *departments))


async def upsert_agents(
    conn: Conn,
    workspace_ids: Sequence[uuid.UUID],
    agent_ids: Sequence[str],
    departments: Sequence[str],
) -> asyncpg.Record:
    """Create unknown agents, move and reactivate listed ones; the counts
    (``inserted``, ``moved``, ``reactivated``).
    """
    counts = await conn.fetchrow(
        UPSERT_AGENTS, list(workspace_ids), list(agent_ids), list(departments)
    )
    assert counts is not None  # an aggregate always returns one row
    return counts


async def retire_unlisted(
    conn: Conn,
    workspace_ids: list[uuid.UUID],
    listed_workspaces: Sequence[uuid.UUID],
    listed_agents: Sequence[str],
) -> int:
    """Retire the agents of ``workspace_ids`` not listed; how many were retired."""
    status = await conn.execute(
        RETIRE_UNLISTED, workspace_ids, list(listed_workspaces), list(listed_agents)
    )
    return _row_count(status)


async def seed(
    conn: Conn,
    workspace_id: uuid.UUID,
    name: str,
    departments: dict[str, str],
    agents: dict[str, str],
) -> None:
    """Create or rename a workspace and its departments, add its agents (existing ones keep
    their control state); in the caller's transaction.
    """
    await conn.execute(NAME_WORKSPACE, workspace_id, name)
    await conn.execute(
        NAME_DEPARTMENTS, workspace_id, list(departments), list(departments.values())
    )
    await conn.execute(ADD_AGENTS, workspace_id, list(agents), list(agents.values()))


def _row_count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
