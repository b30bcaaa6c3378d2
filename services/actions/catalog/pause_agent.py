"""``pause_agent``: agents in the target become ``paused`` (docs/architecture.md §2)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fleetward.actions.v1 import actions_pb2

from services.actions import errors
from services.actions.catalog._agents import (
    AgentStatusKind,
    agent_change,
    iso,
    select_agents,
    status_state,
)
from services.actions.catalog._base import Change, Target
from services.actions.db import Conn
from services.actions.model import AgentStatus, Scope
from services.common.status import FieldViolation

DEFAULT_MINUTES = 30
MAX_MINUTES = 10080


class PauseAgent(AgentStatusKind[actions_pb2.PauseAgentParams]):
    """Pause one agent, a department or the fleet, for a while or indefinitely."""

    name = "pause_agent"
    description = (
        "Pause the agents in the target for duration_minutes (default 30) or indefinitely; "
        "at department and fleet scope already paused agents are skipped; an already paused "
        "agent's pause is only ever extended (ending it early is resume_agent)"
    )
    params_message = actions_pb2.PauseAgentParams
    scopes = (Scope.AGENT, Scope.DEPARTMENT, Scope.FLEET)
    can_rollback = True
    undone_by = "resume_agent"

    def validate(self, params: actions_pb2.PauseAgentParams) -> list[FieldViolation]:
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

    def params_json(self, params: actions_pb2.PauseAgentParams) -> dict[str, Any]:
        """The fields that were set."""
        out: dict[str, Any] = {}
        if params.HasField("duration_minutes"):
            out["duration_minutes"] = params.duration_minutes
        if params.indefinite:
            out["indefinite"] = True
        return out

    def precheck(self, target: Target, params: actions_pb2.PauseAgentParams, now: datetime) -> None:
        """An agent-scope pause of a paused agent must end later than its pause does."""
        super().precheck(target, params, now)
        if target.scope == Scope.AGENT and target.agent_status == AgentStatus.PAUSED:
            _refuse_unless_extended(target.target_id, target.paused_until, _until(params, now))

    async def plan(
        self,
        conn: Conn,
        target: Target,
        params: actions_pb2.PauseAgentParams,
        now: datetime,
        *,
        lock: bool,
    ) -> list[Change]:
        """Active agents get the new ``paused_until``; at agent scope a paused agent too,
        when that extends its pause (otherwise ALREADY_IN_STATE).
        """
        until = _until(params, now)
        rows = await select_agents(conn, target, lock=lock)
        changes = []
        for r in rows:
            if r["status"] != AgentStatus.ACTIVE:
                if target.scope != Scope.AGENT:
                    continue  # department and fleet scope skip paused agents
                _refuse_unless_extended(r["agent_id"], r["paused_until"], until)
            before = status_state(r["status"], r["paused_until"])
            changes.append(agent_change(r, before, status_state(AgentStatus.PAUSED, until)))
        return changes


def _until(params: actions_pb2.PauseAgentParams, now: datetime) -> datetime | None:
    """When the requested pause ends; None when indefinite."""
    if params.indefinite:
        return None
    minutes = params.duration_minutes if params.HasField("duration_minutes") else DEFAULT_MINUTES
    return now + timedelta(minutes=minutes)


def _refuse_unless_extended(
    agent_id: str, current: datetime | None, until: datetime | None
) -> None:
    """ALREADY_IN_STATE unless pausing until ``until`` ends a pause ending at ``current``
    later: a pause never shortens or ends another pause (that is a resume, with resume's
    permission). An indefinite pause is the longest.
    """
    if current is None:
        raise errors.already_in_state(
            agent_id,
            AgentStatus.PAUSED,
            "is already paused indefinitely; a pause never shortens another",
        )
    if until is not None and until <= current:
        raise errors.already_in_state(
            agent_id,
            "paused",
            f"is already paused until {iso(current)}, later than the requested end; a pause "
            "never shortens another (resume_agent ends a pause)",
        )


ACTION = PauseAgent()
