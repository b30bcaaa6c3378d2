"""Looking up a target (docs/architecture.md §5.1): an agent's department builds its resource path.

One statement per scope, optionally joined to the caller's idempotency key (Execute's one
read before the policy call): the key's audit row columns (NULLs when unclaimed) and the
target's. Both lookups build their :class:`Target` in :func:`_target`.
"""

from __future__ import annotations

import uuid

import asyncpg

from services.actions.catalog import Target
from services.actions.db import Conn
from services.actions.model import Scope

# scope -> (found, extra columns, the target's join, how many $n the target uses)
_SCOPES = {
    "agent": (
        "t.agent_id IS NOT NULL",
        ", t.department_id AS target_department_id, t.status AS target_status,"
        " t.paused_until AS target_paused_until",
        "LEFT JOIN agents AS t ON t.workspace_id = $1 AND t.agent_id = $2",
        2,
    ),
    "department": (
        "t.department_id IS NOT NULL",
        "",
        "LEFT JOIN departments AS t ON t.workspace_id = $1 AND t.department_id = $2",
        2,
    ),
    "fleet": ("t.id IS NOT NULL", "", "LEFT JOIN workspaces AS t ON t.id = $1", 1),
}
_KEY = """
LEFT JOIN action_audit_log AS k
       ON k.workspace_id = $1 AND k.actor_user_id = ${subject} AND k.request_id = ${request}"""


def _statement(scope: str, keyed: bool) -> str:
    found, extra, join, used = _SCOPES[scope]
    key = _KEY.format(subject=used + 1, request=used + 2) if keyed else ""
    columns = "k.*, " if keyed else ""
    return (
        f"SELECT {columns}{found} AS target_found{extra}\nFROM (VALUES (1)) AS one (x){key}\n{join}"
    )


PLAIN = {scope: _statement(scope, keyed=False) for scope in _SCOPES}
KEYED = {scope: _statement(scope, keyed=True) for scope in _SCOPES}


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
) -> tuple[asyncpg.Record | None, Target | None]:
    """In one round trip: the row already recorded under the key (if any) and the target."""
    row = await conn.fetchrow(
        KEYED[scope], *_args(workspace_id, scope, target_id), subject, request_id
    )
    target = _target(row, workspace_id, scope, target_id)
    assert row is not None  # _target raised otherwise
    return (row if row["action_id"] is not None else None), target
