"""Looking up targets (docs/architecture.md §5.1): whether they exist, and an agent's
department, which builds its resource path. Every lookup builds its
:class:`~services.actions.catalog.Target` here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.actions.catalog._base import Target
from services.actions.db import Conn
from services.actions.model import ActionRecord, Scope

# One statement per scope: the target's columns (target_found false when it is unknown).
# The keyed form also reads the row already recorded under the caller's idempotency key
# (NULL columns when unclaimed): Execute's one read before the policy call.
PLAIN: dict[str, str] = {
    Scope.AGENT: """
SELECT t.agent_id IS NOT NULL AS target_found, t.department_id AS target_department_id,
       t.status AS target_status, t.paused_until AS target_paused_until
FROM (VALUES (1)) AS one (x)
LEFT JOIN agents AS t ON t.workspace_id = $1 AND t.agent_id = $2""",
    Scope.DEPARTMENT: """
SELECT t.department_id IS NOT NULL AS target_found
FROM (VALUES (1)) AS one (x)
LEFT JOIN departments AS t ON t.workspace_id = $1 AND t.department_id = $2""",
    Scope.FLEET: """
SELECT t.id IS NOT NULL AS target_found
FROM (VALUES (1)) AS one (x)
LEFT JOIN workspaces AS t ON t.id = $1""",
}
KEYED: dict[str, str] = {
    Scope.AGENT: """
SELECT k.*, t.agent_id IS NOT NULL AS target_found, t.department_id AS target_department_id,
       t.status AS target_status, t.paused_until AS target_paused_until
FROM (VALUES (1)) AS one (x)
LEFT JOIN action_audit_log AS k
       ON k.workspace_id = $1 AND k.actor_user_id = $3 AND k.request_id = $4
LEFT JOIN agents AS t ON t.workspace_id = $1 AND t.agent_id = $2""",
    Scope.DEPARTMENT: """
SELECT k.*, t.department_id IS NOT NULL AS target_found
FROM (VALUES (1)) AS one (x)
LEFT JOIN action_audit_log AS k
       ON k.workspace_id = $1 AND k.actor_user_id = $3 AND k.request_id = $4
LEFT JOIN departments AS t ON t.workspace_id = $1 AND t.department_id = $2""",
    Scope.FLEET: """
SELECT k.*, t.id IS NOT NULL AS target_found
FROM (VALUES (1)) AS one (x)
LEFT JOIN action_audit_log AS k
       ON k.workspace_id = $1 AND k.actor_user_id = $2 AND k.request_id = $3
LEFT JOIN workspaces AS t ON t.id = $1""",
}
# CheckAccess: every asked target in one statement, whether it exists, an agent's department.
MANY = """
SELECT t.scope, t.target_id,
       CASE t.scope WHEN 'agent' THEN a.agent_id IS NOT NULL
                    WHEN 'department' THEN d.department_id IS NOT NULL
                    ELSE w.id IS NOT NULL END AS found,
       CASE t.scope WHEN 'agent' THEN a.department_id ELSE d.department_id END AS department_id
FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t (scope, target_id, n)
LEFT JOIN workspaces AS w ON w.id = $1
LEFT JOIN agents AS a ON t.scope = 'agent' AND a.workspace_id = $1 AND a.agent_id = t.target_id
LEFT JOIN departments AS d
       ON t.scope = 'department' AND d.workspace_id = $1 AND d.department_id = t.target_id
ORDER BY t.n"""


def _args(workspace_id: uuid.UUID, scope: str, target_id: str) -> tuple[object, ...]:
    return (workspace_id,) if scope == Scope.FLEET else (workspace_id, target_id)


def _target(
    row: asyncpg.Record | None, workspace_id: uuid.UUID, scope: str, target_id: str
) -> Target | None:
    if row is None:  # pragma: no cover - the VALUES row is always there
        raise RuntimeError("target lookup returned no row")
    if not row["target_found"]:
        return None
    if scope == Scope.AGENT:
        return Target(
            workspace_id,
            scope,
            target_id,
            row["target_department_id"],
            row["target_status"],
            row["target_paused_until"],
        )
    if scope == Scope.DEPARTMENT:
        return Target(workspace_id, scope, target_id, target_id)
    return Target(workspace_id, Scope.FLEET, "", None)


async def look_up(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, scope: str, target_id: str
) -> Target | None:
    """The target, or None when the workspace, department or agent does not exist."""
    row = await conn.fetchrow(PLAIN[scope], *_args(workspace_id, scope, target_id))
    return _target(row, workspace_id, scope, target_id)


async def look_up_keyed(
    conn: Conn,
    workspace_id: uuid.UUID,
    scope: str,
    target_id: str,
    subject: str,
    request_id: str,
) -> tuple[ActionRecord | None, Target | None]:
    """In one round trip: the row already recorded under the key (if any) and the target."""
    row = await conn.fetchrow(
        KEYED[scope], *_args(workspace_id, scope, target_id), subject, request_id
    )
    target = _target(row, workspace_id, scope, target_id)
    assert row is not None  # _target raised otherwise
    return (ActionRecord.from_row(row) if row["action_id"] is not None else None), target


async def look_up_many(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, asked: Sequence[tuple[str, str]]
) -> tuple[list[Target], tuple[str, str] | None]:
    """The asked (scope, target id) targets in order, and the first unknown one (if any)."""
    rows = await conn.fetch(
        MANY, workspace_id, [scope for scope, _ in asked], [target_id for _, target_id in asked]
    )
    missing = next((r for r in rows if not r["found"]), None)
    if missing is not None:
        return [], (missing["scope"], missing["target_id"])
    return [
        Target(workspace_id, r["scope"], r["target_id"], r["department_id"]) for r in rows
    ], None
