"""``resume_agent``: paused agents in the target become ``active`` (docs/architecture.md §2)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fleetward.actions.v1 import actions_pb2

from services.actions import errors, store
from services.actions.catalog._agents import (
    AgentStatusKind,
    agent_change,
    select_agents,
    status_state,
)
from services.actions.catalog._base import Change, Target
from services.actions.db import Conn
from services.actions.model import AgentStatus, Scope


class ResumeAgent(AgentStatusKind[actions_pb2.ResumeAgentParams]):
    """Resume the paused agents of one agent, a department or the fleet."""

    name = "resume_agent"
    description = (
        "Resume the paused agents in the target; resuming an active agent at agent scope "
        "is refused with ALREADY_IN_STATE"
    )
    params_message = actions_pb2.ResumeAgentParams
    scopes = (Scope.AGENT, Scope.DEPARTMENT, Scope.FLEET)
    can_rollback = True
    undone_by = "pause_agent"

    def params_json(self, params: actions_pb2.ResumeAgentParams) -> dict[str, Any]:
        """No parameters."""
        return {}

    def precheck(
        self, target: Target, params: actions_pb2.ResumeAgentParams, now: datetime
    ) -> None:
        """An active agent at agent scope is already resumed."""
        super().precheck(target, params, now)
        if target.scope == Scope.AGENT and target.agent_status != AgentStatus.PAUSED:
            raise errors.already_in_state(target.target_id, target.agent_status or "unknown")

    async def plan(
        self,
        conn: Conn,
        target: Target,
        params: actions_pb2.ResumeAgentParams,
        now: datetime,
        *,
        lock: bool,
    ) -> list[Change]:
        """Every paused agent of the target becomes active."""
        rows = await select_agents(conn, target, lock=lock)
        if target.scope == Scope.AGENT and not any(r["status"] == AgentStatus.PAUSED for r in rows):
            # The agent changed between the look-up and the lock.
            raise errors.already_in_state(target.target_id, AgentStatus.ACTIVE)
        return [
            agent_change(
                r,
                status_state(r["status"], r["paused_until"]),
                status_state(AgentStatus.ACTIVE, None),
            )
            for r in rows
            if r["status"] == AgentStatus.PAUSED
        ]

    async def plan_expired(
        self, conn: Conn, workspace_id: uuid.UUID, pause_id: uuid.UUID
    ) -> list[Change]:
        """The expiring-pause job's plan (locked in the fixed order): the agents action
        ``pause_id`` paused whose pause has passed become active; an agent paused again
        since stays paused.
        """
        rows = await store.agents.lock_expired(conn, workspace_id, pause_id)
        return [
            agent_change(
                r,
                status_state(r["status"], r["paused_until"]),
                status_state(AgentStatus.ACTIVE, None),
            )
            for r in rows
        ]


ACTION = ResumeAgent()
