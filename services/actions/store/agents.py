"""The agents: the control state actions change (``agents``), read with their budgets.

Agents are always locked in one order, ``agent_id`` within a workspace
(docs/architecture.md §5.4), and retired agents are never changed by an action. Every
statement has a name; a locked variant is its own statement.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.actions.db import Conn

_COLUMNS = "agent_id, department_id, status, paused_until, generation, restart_requested_at"
OF_TARGET = f"""
SELECT {_COLUMNS}
FROM agents
WHERE workspace_id = $1 AND status <> 'retired'
  AND ($2::text IS NULL OR department_id = $2)
  AND ($3::text IS NULL OR agent_id = $3)
ORDER BY agent_id"""
LOCK_OF_TARGET = f"""
SELECT {_COLUMNS}
FROM agents
WHERE workspace_id = $1 AND status <> 'retired'
  AND ($2::text IS NULL OR department_id = $2)
  AND ($3::text IS NULL OR agent_id = $3)
ORDER BY agent_id
FOR UPDATE"""
# One agent (agent scope): statements without the optional filters above, so PostgreSQL can
# keep one generic plan for them instead of planning the optional-filter form on every call
# (0.13 ms per Execute by pg_stat_statements; docs/architecture.md, Performance).
OF_AGENT = f"""
SELECT {_COLUMNS}
FROM agents
WHERE workspace_id = $1 AND agent_id = $2 AND status <> 'retired'"""
LOCK_OF_AGENT = f"""
SELECT {_COLUMNS}
FROM agents
WHERE workspace_id = $1 AND agent_id = $2 AND status <> 'retired'
FOR UPDATE"""
SET_STATUS = """
UPDATE agents AS a
SET status = u.status, paused_until = u.paused_until, updated_at = now(), last_action_id = $2
FROM unnest($3::text[], $4::text[], $5::timestamptz[]) AS u(agent_id, status, paused_until)
WHERE a.workspace_id = $1 AND a.agent_id = u.agent_id"""
# One agent's: a plain keyed UPDATE, which keeps a generic plan (the unnest form above is
# planned on every call: 0.17 ms per Execute).
SET_ONE_STATUS = """
UPDATE agents
SET status = $4, paused_until = $5, updated_at = now(), last_action_id = $2
WHERE workspace_id = $1 AND agent_id = $3"""
SET_RESTART = """
UPDATE agents AS a
SET generation = u.generation, restart_requested_at = u.requested_at, updated_at = now(),
    last_action_id = $2
FROM unnest($3::text[], $4::bigint[], $5::timestamptz[]) AS u(agent_id, generation, requested_at)
WHERE a.workspace_id = $1 AND a.agent_id = u.agent_id"""
SET_ONE_RESTART = """
UPDATE agents
SET generation = $4, restart_requested_at = $5, updated_at = now(), last_action_id = $2
WHERE workspace_id = $1 AND agent_id = $3"""
# The non-retired agents of some departments, or of the whole fleet.
WITHIN = """
SELECT agent_id, department_id FROM agents
WHERE workspace_id = $1 AND status <> 'retired' AND ($2 OR department_id = ANY($3::text[]))
ORDER BY agent_id"""
DEPARTMENT_OF = "SELECT department_id FROM agents WHERE workspace_id = $1 AND agent_id = $2"
# FOR SHARE: the inventory cannot move the agent until the caller's transaction ends.
HOLD_DEPARTMENT_OF = """
SELECT department_id FROM agents WHERE workspace_id = $1 AND agent_id = $2 FOR SHARE"""
# What a rollback needs of the agents it may restore: their last action and department.
OWNERS = """
SELECT agent_id AS key, last_action_id, status, department_id FROM agents
WHERE workspace_id = $1 AND agent_id = ANY($2::text[]) ORDER BY agent_id"""
LOCK_OWNERS = """
SELECT agent_id AS key, last_action_id, status, department_id FROM agents
WHERE workspace_id = $1 AND agent_id = ANY($2::text[]) ORDER BY agent_id
FOR UPDATE"""
HOLD_OWNERS = """
SELECT agent_id AS key, last_action_id, status, department_id FROM agents
WHERE workspace_id = $1 AND agent_id = ANY($2::text[]) ORDER BY agent_id
FOR SHARE"""
# Expiring pauses. Uses the partial index agents_pause_expiry (paused_until <= x implies
# NOT NULL).
EXPIRED_PAUSES = """
SELECT DISTINCT workspace_id, last_action_id AS action_id FROM agents
WHERE status = 'paused' AND paused_until <= clock_timestamp() AND last_action_id IS NOT NULL
LIMIT $1"""
STILL_EXPIRED = """
SELECT EXISTS (
    SELECT 1 FROM agents
    WHERE workspace_id = $1 AND last_action_id = $2 AND status = 'paused'
      AND paused_until <= clock_timestamp())"""
# The read RPCs' agents, with their own and their effective budget (own, else the
# department's, else the fleet's).
_WITH_BUDGETS = """
SELECT a.*, ab.monthly_limit_cents AS monthly_budget_cents,
       COALESCE(ab.monthly_limit_cents, db.monthly_limit_cents, fb.monthly_limit_cents)
           AS effective_budget_cents
FROM agents AS a
LEFT JOIN budgets AS ab
    ON ab.workspace_id = a.workspace_id AND ab.scope = 'agent' AND ab.target_id = a.agent_id
LEFT JOIN budgets AS db
    ON db.workspace_id = a.workspace_id AND db.scope = 'department'
   AND db.target_id = a.department_id
LEFT JOIN budgets AS fb
    ON fb.workspace_id = a.workspace_id AND fb.scope = 'fleet' AND fb.target_id = ''
WHERE a.workspace_id = $1"""
GET_WITH_BUDGETS = f"{_WITH_BUDGETS} AND a.agent_id = $2"
PAGE_WITH_BUDGETS = f"""{_WITH_BUDGETS}
  AND ($2::text IS NULL OR a.department_id = $2)
  AND ($3::text IS NULL OR a.status = $3)
  AND ($4::text IS NULL OR a.agent_id > $4)
ORDER BY a.agent_id
LIMIT $5"""
LOCK_EXPIRED = """
SELECT agent_id, department_id, status, paused_until FROM agents
WHERE workspace_id = $1 AND last_action_id = $2 AND status = 'paused'
  AND paused_until <= clock_timestamp()
ORDER BY agent_id
FOR UPDATE"""


async def of_target(
    conn: Conn, workspace_id: uuid.UUID, department: str | None, agent: str | None, *, lock: bool
) -> list[asyncpg.Record]:
    """The non-retired agents of a workspace, a department or one agent, by agent_id;
    locked ``FOR UPDATE`` with ``lock``.
    """
    if agent is not None and department is None:
        return list(await conn.fetch(LOCK_OF_AGENT if lock else OF_AGENT, workspace_id, agent))
    sql = LOCK_OF_TARGET if lock else OF_TARGET
    return list(await conn.fetch(sql, workspace_id, department, agent))


async def set_status(
    conn: Conn,
    workspace_id: uuid.UUID,
    action_id: uuid.UUID,
    agent_ids: list[str],
    statuses: list[str],
    paused_until: list[datetime | None],
) -> None:
    """Write each agent's status and ``paused_until``, and ``action_id`` as its last action."""
    if len(agent_ids) == 1:
        args = (agent_ids[0], statuses[0], paused_until[0])
        await conn.execute(SET_ONE_STATUS, workspace_id, action_id, *args)
        return
    await conn.execute(SET_STATUS, workspace_id, action_id, agent_ids, statuses, paused_until)


async def set_restart(
    conn: Conn,
    workspace_id: uuid.UUID,
    action_id: uuid.UUID,
    agent_ids: list[str],
    generations: list[int],
    requested_at: list[datetime | None],
) -> None:
    """Write each agent's generation and restart request, and ``action_id`` as its last action."""
    if len(agent_ids) == 1:
        args = (agent_ids[0], generations[0], requested_at[0])
        await conn.execute(SET_ONE_RESTART, workspace_id, action_id, *args)
        return
    await conn.execute(SET_RESTART, workspace_id, action_id, agent_ids, generations, requested_at)


async def within(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, fleet: bool, departments: list[str]
) -> list[asyncpg.Record]:
    """The non-retired agents (id, department) of the fleet or of ``departments``."""
    return list(await conn.fetch(WITHIN, workspace_id, fleet, departments))


async def department_of(
    conn: Conn, workspace_id: uuid.UUID, agent_id: str, *, hold: bool
) -> str | None:
    """The agent's department (None: unknown agent); with ``hold``, kept until commit."""
    sql = HOLD_DEPARTMENT_OF if hold else DEPARTMENT_OF
    department: str | None = await conn.fetchval(sql, workspace_id, agent_id)
    return department


async def owners(
    conn: Conn, workspace_id: uuid.UUID, agent_ids: list[str], *, lock: str | None
) -> list[asyncpg.Record]:
    """``key`` (the agent id), ``last_action_id``, ``status``, ``department_id`` of the
    agents, by id; ``lock`` is None, ``"update"`` or ``"share"``.
    """
    sql = {None: OWNERS, "update": LOCK_OWNERS, "share": HOLD_OWNERS}[lock]
    return list(await conn.fetch(sql, workspace_id, agent_ids))


async def expired_pauses(conn: Conn | asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` (workspace_id, action_id) of actions whose pause of some agent passed."""
    return list(await conn.fetch(EXPIRED_PAUSES, limit))


async def still_expired(conn: Conn, workspace_id: uuid.UUID, pause_id: uuid.UUID) -> bool:
    """Whether an agent is still paused by ``pause_id`` with its pause passed."""
    return bool(await conn.fetchval(STILL_EXPIRED, workspace_id, pause_id))


async def lock_expired(
    conn: Conn, workspace_id: uuid.UUID, pause_id: uuid.UUID
) -> list[asyncpg.Record]:
    """The agents ``pause_id`` paused whose pause passed, locked in the fixed order."""
    return list(await conn.fetch(LOCK_EXPIRED, workspace_id, pause_id))


async def get_with_budgets(
    conn: Conn | asyncpg.Pool, workspace_id: uuid.UUID, agent_id: str
) -> asyncpg.Record | None:
    """One agent with ``monthly_budget_cents`` and ``effective_budget_cents``."""
    row: asyncpg.Record | None = await conn.fetchrow(GET_WITH_BUDGETS, workspace_id, agent_id)
    return row


async def page_with_budgets(
    conn: Conn | asyncpg.Pool,
    workspace_id: uuid.UUID,
    department_id: str | None,
    status: str | None,
    after: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to ``limit`` agents after ``after`` by agent_id, with their budgets."""
    return list(
        await conn.fetch(PAGE_WITH_BUDGETS, workspace_id, department_id, status, after, limit)
    )
