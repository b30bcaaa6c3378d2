"""Friendly request types: the action parameters and the scope of ``execute``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, TypeAlias

from fleetward.actions.v1 import actions_pb2

__all__ = [
    "ActionParams",
    "PauseAgent",
    "RestartAgent",
    "ResumeAgent",
    "Scope",
    "ScopeLike",
    "SetBudget",
]


class Scope(enum.StrEnum):
    """How much of the fleet an action targets."""

    FLEET = "fleet"
    DEPARTMENT = "department"
    AGENT = "agent"

    @property
    def proto(self) -> actions_pb2.Scope.ValueType:
        """The ``fleetward.actions.v1.Scope`` value."""
        return _SCOPE_VALUES[self]

    @classmethod
    def of(cls, value: ScopeLike) -> Scope:
        """Accept a :class:`Scope`, ``"agent"``/``"department"``/``"fleet"`` or the proto enum.

        Raises:
            ValueError: For anything else (including ``SCOPE_UNSPECIFIED``).
        """
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                raise ValueError(
                    f"scope must be one of agent, department, fleet; got {value!r}"
                ) from None
        for scope, proto in _SCOPE_VALUES.items():
            if proto == value:
                return scope
        raise ValueError(f"scope must be SCOPE_AGENT, SCOPE_DEPARTMENT or SCOPE_FLEET; got {value}")


_SCOPE_VALUES: dict[Scope, actions_pb2.Scope.ValueType] = {
    Scope.FLEET: actions_pb2.SCOPE_FLEET,
    Scope.DEPARTMENT: actions_pb2.SCOPE_DEPARTMENT,
    Scope.AGENT: actions_pb2.SCOPE_AGENT,
}

ScopeLike: TypeAlias = Scope | Literal["agent", "department", "fleet"] | actions_pb2.Scope.ValueType
"""What ``execute(scope=...)`` accepts."""


@dataclass(frozen=True)
class PauseAgent:
    """Pause the agents in the target for ``duration_minutes`` (server default 30), or
    ``indefinite``ly (not both).
    """

    duration_minutes: int | None = None
    indefinite: bool = False

    def apply(self, request: actions_pb2.ExecuteRequest) -> None:
        """Set the ``pause_agent`` params of ``request``."""
        request.pause_agent.SetInParent()
        if self.duration_minutes is not None:
            request.pause_agent.duration_minutes = self.duration_minutes
        request.pause_agent.indefinite = self.indefinite


@dataclass(frozen=True)
class ResumeAgent:
    """Resume the paused agents in the target."""

    def apply(self, request: actions_pb2.ExecuteRequest) -> None:
        """Set the ``resume_agent`` params of ``request``."""
        request.resume_agent.SetInParent()


@dataclass(frozen=True)
class SetBudget:
    """Set the target's own monthly budget (``monthly_limit_cents``) or ``clear`` it."""

    monthly_limit_cents: int | None = None
    clear: bool = False

    def apply(self, request: actions_pb2.ExecuteRequest) -> None:
        """Set the ``set_budget`` params of ``request``."""
        request.set_budget.SetInParent()
        if self.monthly_limit_cents is not None:
            request.set_budget.monthly_limit_cents = self.monthly_limit_cents
        request.set_budget.clear = self.clear


@dataclass(frozen=True)
class RestartAgent:
    """Ask one agent to restart (cannot be rolled back)."""

    def apply(self, request: actions_pb2.ExecuteRequest) -> None:
        """Set the ``restart_agent`` params of ``request``."""
        request.restart_agent.SetInParent()


ActionParams: TypeAlias = PauseAgent | ResumeAgent | SetBudget | RestartAgent
"""The ``params`` of ``execute``; the type picks the action (the ``oneof`` field)."""
