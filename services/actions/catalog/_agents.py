"""What the agent actions share: select (and lock) a target's agents, and write their status."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.actions import store
from services.actions.audit.documents import iso, parse_iso
from services.actions.catalog._base import ActionKind, Change, P, Target
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


async def select_agents(conn: Conn, target: Target, *, lock: bool) -> list[asyncpg.Record]:
    """The non-retired agents of the target, by agent_id; locked ``FOR UPDATE`` with ``lock``
    (retired agents are never touched; agent_id is the fixed lock order).
    """
    department = target.target_id if target.scope == Scope.DEPARTMENT else None
    agent = target.target_id if target.scope == Scope.AGENT else None
    return await store.agents.of_target(conn, target.workspace_id, department, agent, lock=lock)


def agent_change(row: asyncpg.Record, before: dict[str, Any], after: dict[str, Any]) -> Change:
    """The change of one agent row (its path from the row's own department)."""
    agent_id: str = row["agent_id"]
    return Change(
        TargetKind.AGENT, agent_id, before, after, agent_path(row["department_id"], agent_id)
    )


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
    await store.agents.set_status(
        conn,
        workspace_id,
        action_id,
        [c.key for c in agents],
        [c.after["status"] for c in agents],
        [parse_iso(c.after.get("paused_until")) for c in agents],
    )


class AgentStatusKind(ActionKind[P]):
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
