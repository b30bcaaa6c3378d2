"""What every action type declares, and the value types the lifecycle passes around."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from google.protobuf.message import Message

from services.actions import errors
from services.actions.db import Conn
from services.actions.model import AgentStatus, Scope, TargetKind
from services.common.names import FLEET_PATH, agent_path, department_path
from services.common.status import FieldViolation

# The result lists at most this many agents; the full list is in action_targets.
RESULT_AGENT_LIMIT = 100
SCOPES = tuple(Scope)


@dataclass(frozen=True)
class Target:
    """A looked-up target: what the action touches and its policy resource path."""

    workspace_id: uuid.UUID
    scope: str  # fleet | department | agent
    target_id: str  # "" for fleet
    department_id: str | None  # the department (department scope) or the agent's department
    agent_status: str | None = None  # agent scope only
    paused_until: datetime | None = None  # agent scope only

    @property
    def resource(self) -> str:
        """The policy resource path: ``fleet``, a department's or an agent's."""
        if self.scope == Scope.FLEET:
            return FLEET_PATH
        if self.scope == Scope.DEPARTMENT:
            return department_path(self.target_id)
        return agent_path(str(self.department_id), self.target_id)


@dataclass(frozen=True)
class Change:
    """One target's before/after (a row of ``action_targets``) and the resource it changes.

    ``resource`` is the policy path of what changes (the agent's, as of the locked row, or
    the budget's): authorization checks the permission of the change on exactly that
    path (docs/architecture.md §5.10).
    """

    kind: str  # agent | budget
    key: str  # agent id, or "<scope>:<target_id>" for a budget
    before: dict[str, Any]
    after: dict[str, Any]
    resource: str

    def inverted(self) -> Change:
        """The change that restores ``before`` (what a rollback applies)."""
        return Change(self.kind, self.key, self.after, self.before, self.resource)

    @property
    def label(self) -> str:
        """``agent/<id>`` or ``budget/<scope>:<id>``: how results and errors name it."""
        return f"{self.kind}/{self.key}"


P = TypeVar("P", bound=Message)


class ActionKind(ABC, Generic[P]):
    """One action type of the catalog (one module per type under ``catalog/``), generic over
    its params message ``P``: every method that takes the params takes exactly that type.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params_message: type[P]
    scopes: ClassVar[tuple[Scope, ...]]
    can_rollback: ClassVar[bool]
    # Whether the effect changes the agents in the target (so a department or fleet
    # target reaches every agent in it), rather than only the target's own budget.
    changes_agents: ClassVar[bool]
    # The action type whose permission undoing this one needs on each resource the
    # rollback changes (undoing a pause resumes agents); None when it cannot be undone.
    undone_by: ClassVar[str | None]
    # Whether the effect reaches outside PostgreSQL (a call to another system). Such a kind
    # is recorded in two steps, its intent committed before it acts; every other kind's
    # effect, row and events commit in one transaction (docs/architecture.md §5.2).
    external_effect: ClassVar[bool] = False

    @property
    def permission(self) -> str:
        """The policy permission, ``actions:<name>``."""
        return f"actions:{self.name}"

    @property
    def undo_permission(self) -> str | None:
        """The permission a rollback of this action needs on every resource it restores."""
        return None if self.undone_by is None else f"actions:{self.undone_by}"

    def reaches_beyond_target(self, scope: str) -> bool:
        """Whether an action at ``scope`` changes resources other than the target's path."""
        return self.changes_agents and scope != Scope.AGENT

    def validate(self, params: P) -> list[FieldViolation]:
        """Field violations of the params message (field paths start with the type name)."""
        return []

    @abstractmethod
    def params_json(self, params: P) -> dict[str, Any]:
        """The params as given, as a JSON object (stored, fingerprinted, shown)."""

    def precheck(self, target: Target, params: P, now: datetime) -> None:
        """Refuse, before anything is recorded, a request that cannot change anything.

        No action touches a retired agent.
        """
        if target.scope == Scope.AGENT and target.agent_status == AgentStatus.RETIRED:
            raise errors.already_in_state(target.target_id, AgentStatus.RETIRED)

    @abstractmethod
    async def plan(
        self,
        conn: Conn,
        target: Target,
        params: P,
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
        await self.apply(conn, workspace_id, [c.inverted() for c in changes], action_id)

    def summarize(self, changes: Sequence[Change]) -> dict[str, Any]:
        """The ``result`` object: count, at most 100 agents, truncated."""
        return agent_result(changes)


def agent_result(changes: Sequence[Change]) -> dict[str, Any]:
    """``{"count", "agents": [...≤100], "truncated"}`` for agent changes."""
    agents = [c for c in changes if c.kind == TargetKind.AGENT]
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
