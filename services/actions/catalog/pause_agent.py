"""``pause_agent``: agents in the target become ``paused`` (ARCHITECTURE §2)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fleetward.actions.v1 import actions_pb2

from services.actions.catalog._agents import AgentStatusKind, select_agents, status_state
from services.actions.catalog._base import Change, Target
from services.actions.db import Conn
from services.common.status import FieldViolation

DEFAULT_MINUTES = 30
MAX_MINUTES = 10080


class PauseAgent(AgentStatusKind):
    """Pause one agent, a department or the fleet, for a while or indefinitely."""

    name = "pause_agent"
    description = (
        "Pause the agents in the target for duration_minutes (default 30) or indefinitely; "
        "at department and fleet scope already paused agents are skipped"
    )
    params_message = actions_pb2.PauseAgentParams
    scopes = ("agent", "department", "fleet")
    can_rollback = True

    def validate(self, params: Any) -> list[FieldViolation]:
        """duration_minutes in 1..10080, not together with indefinite."""
        out: list[FieldViolation] = []
        if params.HasField("duration_minutes"):
            if params.indefinite:
                out.append(
                    FieldViolation(
                        "pause_agent.indefinite", "set either duration_minutes or indefinite"
                    )
                )
            if not 1 <= params.duration_minutes <= MAX_MINUTES:
                out.append(
                    FieldViolation(
                        "pause_agent.duration_minutes", f"must be 1..{MAX_MINUTES} minutes"
                    )
                )
        return out

    def params_json(self, params: Any) -> dict[str, Any]:
        """The fields that were set."""
        out: dict[str, Any] = {}
        if params.HasField("duration_minutes"):
            out["duration_minutes"] = params.duration_minutes
        if params.indefinite:
            out["indefinite"] = True
        return out

    async def plan(
        self,
        conn: Conn,
        target: Target,
        params: Any,
        now: datetime,
        *,
        lock: bool,
    ) -> list[Change]:
        """Active agents (and, at agent scope, a paused one) get the new ``paused_until``."""
        until: datetime | None = None
        if not params.indefinite:
            minutes = (
                params.duration_minutes if params.HasField("duration_minutes") else DEFAULT_MINUTES
            )
            until = now + timedelta(minutes=minutes)
        rows = await select_agents(conn, target, lock=lock)
        return [
            Change(
                "agent",
                r["agent_id"],
                status_state(r["status"], r["paused_until"]),
                status_state("paused", until),
            )
            for r in rows
            if r["status"] == "active" or target.scope == "agent"
        ]


ACTION = PauseAgent()
