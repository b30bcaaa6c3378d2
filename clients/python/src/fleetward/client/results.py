"""Typed views of an ``Action.result`` Struct: what an action changed (or would change)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from fleetward.actions.v1 import actions_pb2

__all__ = ["ActionResult", "AgentChange", "action_result"]


@dataclass(frozen=True)
class AgentChange:
    """One agent an action changed: its status before and after, and when a pause ends."""

    agent_id: str
    previous_status: str
    new_status: str
    resume_at: str | None = None


@dataclass(frozen=True)
class ActionResult:
    """``Action.result``: how many agents changed and the first (at most 100) of them.

    Attributes:
        count: Agents changed (or, for a ``validate_only`` preview, that would change).
        agents: Per-agent changes; complete unless ``truncated``.
        truncated: Whether ``agents`` lists only part of ``count``.
        raw: The whole result as plain JSON (budget changes, skipped agents, ...).
    """

    count: int
    agents: tuple[AgentChange, ...]
    truncated: bool
    raw: dict[str, Any]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def action_result(action: actions_pb2.Action) -> ActionResult:
    """Decode ``action.result`` (missing fields read as empty)."""
    raw: dict[str, Any] = json_format.MessageToDict(action.result)
    agents = tuple(
        AgentChange(
            agent_id=str(entry.get("agent_id", "")),
            previous_status=str(entry.get("previous_status", "")),
            new_status=str(entry.get("new_status", "")),
            resume_at=_text(entry.get("resume_at")),
        )
        for entry in raw.get("agents", [])
        if isinstance(entry, dict)
    )
    count = raw.get("count", len(agents))
    return ActionResult(
        count=int(count) if isinstance(count, int | float) else len(agents),
        agents=agents,
        truncated=bool(raw.get("truncated", False)),
        raw=raw,
    )
