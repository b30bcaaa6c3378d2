"""The action service's vocabulary as types: statuses, scopes and target kinds.

Each is a :class:`~enum.StrEnum` whose values are exactly what the schema stores
(migrations/0001 checks the same sets), so a member is the column's value, compares
equal to it and serialises as it (JSON, asyncpg parameters, metric labels). See
docs/architecture.md §2 for the status machine and §3 for scopes.
"""

from __future__ import annotations

from enum import StrEnum


class ActionStatus(StrEnum):
    """Where an action is in its life (``action_audit_log.status``)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    DENIED = "denied"

    @property
    def is_final(self) -> bool:
        """Whether the action is over (only ``completed → rolled_back`` follows)."""
        return self not in (ActionStatus.PENDING, ActionStatus.IN_PROGRESS)


UNFINISHED = (ActionStatus.PENDING, ActionStatus.IN_PROGRESS)


class AgentStatus(StrEnum):
    """An agent's control state (``agents.status``)."""

    ACTIVE = "active"
    PAUSED = "paused"
    RETIRED = "retired"


class Scope(StrEnum):
    """What an action targets: the whole fleet, a department or one agent."""

    FLEET = "fleet"
    DEPARTMENT = "department"
    AGENT = "agent"


class TargetKind(StrEnum):
    """What one ``action_targets`` row changed."""

    AGENT = "agent"
    BUDGET = "budget"
