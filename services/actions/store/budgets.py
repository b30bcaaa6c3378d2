"""The monthly budgets (``budgets``): one row per fleet, department or agent that has one.

A cleared budget keeps its row (a NULL limit), so ``last_action_id`` still names its last
change and a rollback can tell whether it was changed since. Budgets are locked after
agents everywhere (set_budget and rollback), so the two never deadlock
(docs/architecture.md §5.4).
"""

from __future__ import annotations

import uuid

import asyncpg

from services.actions.db import Conn

LIMIT = """
SELECT monthly_limit_cents FROM budgets
WHERE workspace_id = $1 AND scope = $2 AND target_id = $3"""
LOCK_LIMIT = """
SELECT monthly_limit_cents FROM budgets
WHERE workspace_id = $1 AND scope = $2 AND target_id = $3
FOR UPDATE"""
UPSERT = """
INSERT INTO budgets (workspace_id, scope, target_id, monthly_limit_cents, last_action_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workspace_id, scope, target_id) DO UPDATE
SET monthly_limit_cents = EXCLUDED.monthly_limit_cents,
    last_action_id = EXCLUDED.last_action_id, updated_at = now()"""
# What a rollback needs of the budgets it may restore, keyed as action_targets keys them.
OWNERS = """
SELECT scope || ':' || target_id AS key, last_action_id, '' AS status, scope, target_id
FROM budgets
WHERE workspace_id = $1 AND scope || ':' || target_id = ANY($2::text[])
ORDER BY scope, target_id"""
LOCK_OWNERS = """
SELECT scope || ':' || target_id AS key, last_action_id, '' AS status, scope, target_id
FROM budgets
WHERE workspace_id = $1 AND scope || ':' || target_id = ANY($2::text[])
ORDER BY scope, target_id
FOR UPDATE"""


async def limit_of(
    conn: Conn, workspace_id: uuid.UUID, scope: str, target_id: str, *, lock: bool
) -> int | None:
    """The target's own monthly limit in cents (None: none); locked with ``lock``."""
    sql = LOCK_LIMIT if lock else LIMIT
    cents: int | None = await conn.fetchval(sql, workspace_id, scope, target_id)
    return cents


async def upsert(
    conn: Conn,
    workspace_id: uuid.UUID,
    scope: str,
    target_id: str,
    monthly_limit_cents: int | None,
    action_id: uuid.UUID,
) -> None:
    """Set (or clear, with None) the target's budget, ``action_id`` as its last change."""
    await conn.execute(UPSERT, workspace_id, scope, target_id, monthly_limit_cents, action_id)


async def owners(
    conn: Conn, workspace_id: uuid.UUID, keys: list[str], *, lock: bool
) -> list[asyncpg.Record]:
    """``key`` (``scope:target_id``), ``last_action_id``, ``scope``, ``target_id`` of the
    budgets with these keys, in lock order; locked with ``lock``.
    """
    return list(await conn.fetch(LOCK_OWNERS if lock else OWNERS, workspace_id, keys))
