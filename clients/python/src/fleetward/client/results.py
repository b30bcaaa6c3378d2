"""Typed views of an ``Action.result`` Struct: what an action changed (or would change)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from fleetward.actions.v1 import actions_pb2

__all__ = ["ActionResult", "AgentChange", "SkippedTarget", "action_result"]


@dataclass(frozen=True)
class AgentChange:
    """One agent an action changed: its status before and after, and when a pause ends."""

    agent_id: str
    previous_status: str
    new_status: str
    resume_at: str | None = None


@dataclass(frozen=True)
class SkippedTarget:
    """A target an action (or rollback) left unchanged, and why.

    Attributes:
        target: ``agent/<id>`` or ``budget/<scope>:<id>``.
        reason: ``denied`` (``skip_denied``: the caller may not make this change; see
            ``permission``), ``superseded`` (``skip_superseded``: changed later by
            ``superseded_by``) or ``unchecked`` (joined or moved within the target after
            the permission check, so it was not authorized and left as it was).
        permission: With ``denied``: the permission the caller lacks on it.
        superseded_by: With ``superseded``: the later action id (or ``retired``).
    """

    target: str
    reason: str
    permission: str = ""
    superseded_by: str = ""


@dataclass(frozen=True)
class ActionResult:
    """``Action.result``: how many agents changed and the first (at most 100) of them.

    Attributes:
        count: Agents changed (or, for a ``validate_only`` preview, that would change).
        agents: Per-agent changes; complete unless ``truncated``.
        truncated: Whether ``agents`` lists only part of ``count``.
        skipped: Targets left unchanged (at most 100 of them), and why.
        skipped_count: How many targets were left unchanged in all.
        raw: The whole result as plain JSON (budget changes, skipped agents, ...).
    """

    count: int
    agents: tuple[AgentChange, ...]
    truncated: bool
    raw: dict[str, Any]
    skipped: tuple[SkippedTarget, ...] = ()
    skipped_count: int = 0


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
    skipped = tuple(
        SkippedTarget(
            target=str(entry.get("target", "")),
            reason=str(entry.get("reason", "superseded")),
            permission=str(entry.get("permission", "")),
            superseded_by=str(entry.get("superseded_by", "")),
        )
        for entry in raw.get("skipped", [])
        if isinstance(entry, dict)
    )
    count = raw.get("count", len(agents))
    skipped_count = raw.get("skipped_count", len(skipped))
    return ActionResult(
        count=int(count) if isinstance(count, int | float) else len(agents),
        agents=agents,
        truncated=bool(raw.get("truncated", False)),
        raw=raw,
        skipped=skipped,
        skipped_count=int(skipped_count) if isinstance(skipped_count, int | float) else 0,
    )
