"""What every action type declares, and the value types the lifecycle passes around."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from google.protobuf.message import Message

from services.actions import errors
from services.actions.db import Conn
from services.common.status import FieldViolation

# The result lists at most this many agents; the full list is in action_targets.
RESULT_AGENT_LIMIT = 100
SCOPES = ("fleet", "department", "agent")


@dataclass(frozen=True)
class Target:
    """A looked-up target: what the action touches and its policy resource path."""

    workspace_id: uuid.UUID
    scope: str  # fleet | department | agent
    target_id: str  # "" for fleet
    department_id: str | None  # the department (department scope) or the agent's department
    agent_status: str | None = None  # agent scope only

    @property
    def resource(self) -> str:
        """The policy resource path of ARCHITECTURE §3."""
        if self.scope == "fleet":
            return "fleet"
        if self.scope == "department":
            return f"fleet/departments/{self.target_id}"
        return f"fleet/departments/{self.department_id}/agents/{self.target_id}"


@dataclass(frozen=True)
class Change:
    """One target's before/after (a row of ``action_targets``)."""

    kind: str  # agent | budget
    key: str  # agent id, or "<scope>:<target_id>" for a budget
    before: dict[str, Any]
    after: dict[str, Any]


class ActionKind(ABC):
    """One action type of the catalog (one module per type under ``catalog/``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    params_message: ClassVar[type[Message]]
    scopes: ClassVar[tuple[str, ...]]
    can_rollback: ClassVar[bool]

    @property
    def permission(self) -> str:
        """The policy permission, ``actions:<name>``."""
        return f"actions:{self.name}"

    def validate(self, params: Any) -> list[FieldViolation]:
        """Field violations of the params message (field paths start with the type name)."""
        return []

    @abstractmethod
    def params_json(self, params: Any) -> dict[str, Any]:
        """The params as given, as a JSON object (stored, fingerprinted, shown)."""

    def precheck(self, target: Target) -> None:
        """Refuse, before anything is recorded, a request that cannot change anything.

        No action touches a retired agent.
        """
        if target.scope == "agent" and target.agent_status == "retired":
            raise errors.already_in_state(target.target_id, "retired")

    @abstractmethod
    async def plan(
        self,
        conn: Conn,
        target: Target,
        params: Any,
        now: datetime,
        *,
        lock: bool,
    ) -> list[Change]:
        """The exact changes the action would make; with ``lock`` the rows are locked."""

    @abstractmethod
    async def apply(
        self,
        conn: Conn,
        workspace_id: uuid.UUID,
        changes: Sequence[Change],
        action_id: uuid.UUID,
    ) -> None:
        """Write the ``after`` of every change, set-based, marking ``last_action_id``."""

    async def execute(
        self,
        conn: Conn,
        target: Target,
        params: Any,
        action_id: uuid.UUID,
        now: datetime,
    ) -> list[Change]:
        """Lock, plan and apply; the returned changes are the undo (their ``before``)."""
        changes = await self.plan(conn, target, params, now, lock=True)
        await self.apply(conn, target.workspace_id, changes, action_id)
        return changes

    async def rollback(
        self,
        conn: Conn,
        workspace_id: uuid.UUID,
        changes: Sequence[Change],
        action_id: uuid.UUID,
    ) -> None:
        """Restore the ``before`` of ``changes`` (rows already locked by the caller)."""
        if not self.can_rollback:
            raise NotImplementedError(f"{self.name} cannot be rolled back")
        restore = [Change(c.kind, c.key, c.after, c.before) for c in changes]
        await self.apply(conn, workspace_id, restore, action_id)

    def summarize(self, changes: Sequence[Change]) -> dict[str, Any]:
        """The ``result`` object: count, at most 100 agents, truncated."""
        return agent_result(changes)


def agent_result(changes: Sequence[Change]) -> dict[str, Any]:
    """``{"count", "agents": [...≤100], "truncated"}`` for agent changes."""
    agents = [c for c in changes if c.kind == "agent"]
    return {
        "count": len(agents),
        "agents": [
            {
                "agent_id": c.key,
                "previous_status": c.before.get("status"),
                "new_status": c.after.get("status"),
                "resume_at": c.after.get("paused_until"),
            }
            for c in agents[:RESULT_AGENT_LIMIT]
        ],
        "truncated": len(agents) > RESULT_AGENT_LIMIT,
    }
