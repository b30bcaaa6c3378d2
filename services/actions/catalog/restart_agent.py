"""``restart_agent``: one agent's generation + 1 and ``restart_requested_at``.

See docs/architecture.md §2.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleetward.actions.v1 import actions_pb2

from services.actions import errors, store
from services.actions.catalog._agents import (
    agent_change,
    iso,
    parse_iso,
    select_agents,
)
from services.actions.catalog._base import RESULT_AGENT_LIMIT, ActionKind, Change, Target
from services.actions.db import Conn
from services.actions.model import AgentStatus, Scope


class RestartAgent(ActionKind[actions_pb2.RestartAgentParams]):
    """Ask one agent to restart. Cannot be rolled back."""

    name = "restart_agent"
    description = "Ask one agent to restart (generation + 1); cannot be rolled back"
    params_message = actions_pb2.RestartAgentParams
    scopes = (Scope.AGENT,)
    can_rollback = False
    changes_agents = True
    undone_by = None

    def params_json(self, params: actions_pb2.RestartAgentParams) -> dict[str, Any]:
        """No parameters."""
        return {}

    async def plan(
        self,
        conn: Conn,
        target: Target,
        params: actions_pb2.RestartAgentParams,
        now: datetime,
        *,
        lock: bool,
    ) -> list[Change]:
        """The agent's next generation."""
        rows = await select_agents(conn, target, lock=lock)
        if not rows:
            raise errors.already_in_state(target.target_id, AgentStatus.RETIRED)
        return [
            agent_change(
                r,
                {
                    "status": r["status"],
                    "generation": r["generation"],
                    "restart_requested_at": iso(r["restart_requested_at"]),
                },
                {
                    "status": r["status"],
                    "generation": r["generation"] + 1,
                    "restart_requested_at": iso(now),
                },
            )
            for r in rows
        ]

    async def apply(
        self,
        conn: Conn,
        workspace_id: uuid.UUID,
        changes: Sequence[Change],
        action_id: uuid.UUID,
    ) -> None:
        """One UPDATE."""
        await store.agents.set_restart(
            conn,
            workspace_id,
            action_id,
            [c.key for c in changes],
            [c.after["generation"] for c in changes],
            [parse_iso(c.after["restart_requested_at"]) for c in changes],
        )

    def summarize(self, changes: Sequence[Change]) -> dict[str, Any]:
        """Count and agents, each with its new generation."""
        return {
            "count": len(changes),
            "agents": [
                {
                    "agent_id": c.key,
                    "previous_status": c.before["status"],
                    "new_status": c.after["status"],
                    "resume_at": None,
                    "generation": c.after["generation"],
                }
                for c in changes[:RESULT_AGENT_LIMIT]
            ],
            "truncated": len(changes) > RESULT_AGENT_LIMIT,
        }


ACTION = RestartAgent()
