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


# The same lookups joined to the caller's idempotency key (Execute's one read before the
# policy call): the key's audit row columns (NULLs when unclaimed) and the target's.
_KEYED = """
SELECT k.*, {target} AS target_found{extra}
FROM (VALUES (1)) AS one (x)
LEFT JOIN action_audit_log AS k
       ON k.workspace_id = $1 AND k.actor_user_id = ${subject} AND k.request_id = ${request}
{join}"""
KEYED_AGENT = _KEYED.format(
    target="t.agent_id IS NOT NULL",
    extra=", t.department_id AS target_department_id, t.status AS target_status",
    subject=3,
    request=4,
    join="LEFT JOIN agents AS t ON t.workspace_id = $1 AND t.agent_id = $2",
)
KEYED_DEPARTMENT = _KEYED.format(
    target="t.department_id IS NOT NULL",
    extra="",
    subject=3,
    request=4,
    join="LEFT JOIN departments AS t ON t.workspace_id = $1 AND t.department_id = $2",
)
KEYED_FLEET = _KEYED.format(
    target="t.id IS NOT NULL",
    extra="",
    subject=2,
    request=3,
    join="LEFT JOIN workspaces AS t ON t.id = $1",
)


async def look_up_keyed(
    conn: Conn,
    workspace_id: uuid.UUID,
    scope: str,
    target_id: str,
    subject: str,
    request_id: str,
) -> tuple[asyncpg.Record | None, Target | None]:
    """In one round trip: the row already recorded under the key (if any) and the target."""
    if scope == "agent":
        row = await conn.fetchrow(KEYED_AGENT, workspace_id, target_id, subject, request_id)
    elif scope == "department":
        row = await conn.fetchrow(KEYED_DEPARTMENT, workspace_id, target_id, subject, request_id)
    else:
        row = await conn.fetchrow(KEYED_FLEET, workspace_id, subject, request_id)
    if row is None:  # pragma: no cover - the VALUES row is always there
        raise RuntimeError("keyed lookup returned no row")
    existing = row if row["action_id"] is not None else None
    if not row["target_found"]:
        return existing, None
    if scope == "agent":
        target = Target(
            workspace_id, scope, target_id, row["target_department_id"], row["target_status"]
        )
    elif scope == "department":
        target = Target(workspace_id, scope, target_id, target_id)
    else:
        target = Target(workspace_id, "fleet", "", None)
    return existing, target
