"""Set-based SQL shared by the agent actions: select (and lock) a target's agents, write them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.actions.audit.documents import iso
from services.actions.catalog._base import ActionKind, Change, Target
from services.actions.db import Conn
from services.actions.model import Scope, TargetKind
from services.common.names import agent_path

__all__ = [
    "AgentStatusKind",
    "agent_change",
    "apply_status",
    "iso",
    "parse_iso",
    "select_agents",
    "status_state",
]

# Retired agents are never touched. ORDER BY agent_id is the fixed lock order (§5.4).
_SELECT = """
SELECT agent_id, department_id, status, paused_until, generation, restart_requested_at
FROM agents
WHERE workspace_id = $1 AND status <> 'retired'
  AND ($2::text IS NULL OR department_id = $2)
  AND ($3::text IS NULL OR agent_id = $3)
ORDER BY agent_id"""
SELECT_AGENTS = _SELECT
SELECT_AGENTS_FOR_UPDATE = _SELECT + " FOR UPDATE"

APPLY_STATUS = """
UPDATE agents AS a
SET status = u.status, paused_until = u.paused_until, updated_at = now(), last_action_id = $2
FROM unnest($3::text[], $4::text[], $5::timestamptz[]) AS u(agent_id, status, paused_until)
WHERE a.workspace_id = $1 AND a.agent_id = u.agent_id"""

APPLY_RESTART = """
UPDATE agents AS a
SET generation = u.generation, restart_requested_at = u.requested_at, updated_at = now(),
    last_action_id = $2
FROM unnest($3::text[], $4::bigint[], $5::timestamptz[]) AS u(agent_id, generation, requested_at)
WHERE a.workspace_id = $1 AND a.agent_id = u.agent_id"""


async def select_agents(conn: Conn, target: Target, *, lock: bool) -> list[asyncpg.Record]:
    """The non-retired agents of the target, by agent_id; locked ``FOR UPDATE`` with ``lock``."""
    department = target.target_id if target.scope == Scope.DEPARTMENT else None
    agent = target.target_id if target.scope == Scope.AGENT else None
    sql = SELECT_AGENTS_FOR_UPDATE if lock else SELECT_AGENTS
    return list(await conn.fetch(sql, target.workspace_id, department, agent))


def agent_change(row: asyncpg.Record, before: dict[str, Any], after: dict[str, Any]) -> Change:
    """The change of one agent row (its path from the row's own department)."""
    agent_id: str = row["agent_id"]
    return Change(
        TargetKind.AGENT, agent_id, before, after, agent_path(row["department_id"], agent_id)
    )


def parse_iso(value: object) -> datetime | None:
    """The inverse of :func:`iso`."""
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def status_state(status: str, paused_until: datetime | None) -> dict[str, str | None]:
    """The JSON before/after of a pause or resume."""
    return {"status": status, "paused_until": iso(paused_until)}


async def apply_status(
    conn: Conn,
    workspace_id: uuid.UUID,
    changes: Sequence[Change],
    action_id: uuid.UUID,
) -> None:
    """Write each change's ``after`` status and ``paused_until`` in one statement."""
    agents = [c for c in changes if c.kind == TargetKind.AGENT]
    if not agents:
        return
    await conn.execute(
        APPLY_STATUS,
        workspace_id,
        action_id,
        [c.key for c in agents],
        [c.after["status"] for c in agents],
        [parse_iso(c.after.get("paused_until")) for c in agents],
    )


class AgentStatusKind(ActionKind):
    """An action whose changes are agents' status and ``paused_until`` (pause, resume)."""

    changes_agents = True

    async def apply(
        self,
        conn: Conn,
        workspace_id: uuid.UUID,
        changes: Sequence[Change],
        action_id: uuid.UUID,
    ) -> None:
        """One UPDATE for all agents."""
        await apply_status(conn, workspace_id, changes, action_id)
