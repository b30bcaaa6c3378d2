"""Looking up a target (ARCHITECTURE §5.1): an agent's department builds its resource path."""

from __future__ import annotations

import uuid

import asyncpg

from services.actions.catalog import Target
from services.actions.db import Conn

SELECT_WORKSPACE = "SELECT EXISTS (SELECT 1 FROM workspaces WHERE id = $1)"
SELECT_DEPARTMENT = """
SELECT EXISTS (SELECT 1 FROM departments WHERE workspace_id = $1 AND department_id = $2)"""
SELECT_AGENT = "SELECT department_id, status FROM agents WHERE workspace_id = $1 AND agent_id = $2"


async def look_up(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, scope: str, target_id: str
) -> Target | None:
    """The target, or None when the workspace, department or agent does not exist."""
    if scope == "agent":
        row = await conn.fetchrow(SELECT_AGENT, workspace_id, target_id)
        if row is None:
            return None
        return Target(workspace_id, scope, target_id, row["department_id"], row["status"])
    if scope == "department":
        if not await conn.fetchval(SELECT_DEPARTMENT, workspace_id, target_id):
            return None
        return Target(workspace_id, scope, target_id, target_id)
    if not await conn.fetchval(SELECT_WORKSPACE, workspace_id):
        return None
    return Target(workspace_id, "fleet", "", None)
