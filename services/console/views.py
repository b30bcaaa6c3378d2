"""What the pages show, computed from the service's messages (no HTML here: templates escape)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleetward.actions.v1 import actions_pb2
from fleetward.client import Scope, action_result
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

SCOPES = {
    actions_pb2.SCOPE_AGENT: Scope.AGENT,
    actions_pb2.SCOPE_DEPARTMENT: Scope.DEPARTMENT,
    actions_pb2.SCOPE_FLEET: Scope.FLEET,
}
LABELS = {
    "pause_agent": "Pause",
    "resume_agent": "Resume",
    "set_budget": "Budget",
    "restart_agent": "Restart",
    "rollback": "Rollback",
}


def enum_name(value: int, enum: Any, prefix: str) -> str:
    """``AGENT_STATUS_PAUSED`` → ``paused``; ``""`` for the unspecified value."""
    name: str = enum.Name(value)
    short = name.removeprefix(prefix).lower()
    return "" if short == "unspecified" else short


def when(ts: Timestamp) -> datetime | None:
    """A set Timestamp as an aware datetime, else None."""
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    """``in 29 min`` / ``3 h ago`` (the page also carries the exact time)."""
    if moment is None:
        return ""
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    ahead, span = seconds >= 0, abs(seconds)
    if span < 60:
        text = f"{int(span)} s"
    elif span < 3600:
        text = f"{int(span // 60)} min"
    elif span < 86400:
        text = f"{int(span // 3600)} h {int(span % 3600 // 60)} min"
    else:
        text = f"{int(span // 86400)} d"
    return f"in {text}" if ahead else f"{text} ago"


def dollars(cents: int | None) -> str:
    """``$1,234.50``, or ``—`` for none."""
    if cents is None:
        return "—"
    return f"${cents / 100:,.2f}"


@dataclass(frozen=True)
class Button:
    """One action button on one target, enabled or not, with the reason when not."""

    action_type: str
    label: str
    scope: str
    target_id: str
    target_label: str
    enabled: bool
    title: str


@dataclass(frozen=True)
class AgentRow:
    """One agent on the fleet page."""

    agent_id: str
    status: str
    paused_until: datetime | None
    own_budget: str
    effective_budget: str
    generation: int
    last_action_id: str
    buttons: tuple[Button, ...]


@dataclass
class DepartmentGroup:
    """A department's agents and its own buttons."""

    department_id: str
    buttons: tuple[Button, ...] = ()
    agents: list[AgentRow] = field(default_factory=list)


def buttons_for(
    scope: str,
    target_id: str,
    catalog: Sequence[actions_pb2.ActionType],
    access: actions_pb2.TargetAccess | None,
) -> tuple[Button, ...]:
    """The catalog's buttons for one target, each enabled by ``CheckAccess``.

    A permission denied only on some agents in the target (``AGENTS_DENIED``) leaves the
    button enabled: the dialog lists those agents and offers to skip them.
    """
    denied = {d.permission: d for d in access.denied} if access else {}
    allowed = set(access.allowed) if access else set()
    label = "the fleet" if scope == "fleet" else f"{scope} {target_id}"
    out = []
    order = list(LABELS)
    for kind in sorted(catalog, key=lambda k: order.index(k.name) if k.name in order else 99):
        if not any(SCOPES.get(s) == scope for s in kind.allowed_scopes):
            continue
        permission = kind.required_permission
        denial = denied.get(permission)
        if permission in allowed:
            enabled, title = True, f"{kind.description}"
        elif denial is not None and denial.code == actions_pb2.DENIAL_CODE_AGENTS_DENIED:
            some = ", ".join(denial.denied_agent_ids)
            enabled = True
            title = f"{denial.denied_count} agent(s) denied ({some}); the dialog can skip them"
        else:
            enabled = False
            title = denial.reason if denial is not None else f"requires {permission}"
        out.append(
            Button(
                action_type=kind.name,
                label=LABELS.get(kind.name, kind.name),
                scope=scope,
                target_id=target_id,
                target_label=label,
                enabled=enabled,
                title=title,
            )
        )
    return tuple(out)


def agent_row(agent: actions_pb2.Agent, buttons: tuple[Button, ...]) -> AgentRow:
    """One agent's row."""
    own = agent.monthly_budget_cents if agent.HasField("monthly_budget_cents") else None
    effective = agent.effective_budget_cents if agent.HasField("effective_budget_cents") else None
    return AgentRow(
        agent_id=agent.agent_id,
        status=enum_name(agent.status, actions_pb2.AgentStatus, "AGENT_STATUS_"),
        paused_until=when(agent.paused_until),
        own_budget=dollars(own),
        effective_budget=dollars(effective),
        generation=agent.generation,
        last_action_id=agent.last_action_id,
        buttons=buttons,
    )


def group_by_department(rows: Iterable[tuple[str, AgentRow]]) -> list[DepartmentGroup]:
    """Rows grouped by department id, departments and agents sorted."""
    groups: dict[str, DepartmentGroup] = {}
    for department, row in rows:
        groups.setdefault(department, DepartmentGroup(department)).agents.append(row)
    return [groups[d] for d in sorted(groups)]


def action_summary(action: actions_pb2.Action) -> dict[str, Any]:
    """An action as plain JSON for the page's scripts and templates."""
    result = action_result(action)
    return {
        "action_id": action.action_id,
        "action_type": action.action_type,
        "label": LABELS.get(action.action_type, action.action_type),
        "scope": SCOPES.get(action.scope, ""),
        "target_id": action.target_id,
        "status": enum_name(action.status, actions_pb2.ActionStatus, "ACTION_STATUS_"),
        "reason": action.reason,
        "actor": action.actor.subject,
        "roles": list(action.actor.roles),
        "params": json_format.MessageToDict(action.params),
        "count": result.count,
        "agents": [
            {
                "agent_id": a.agent_id,
                "from": a.previous_status,
                "to": a.new_status,
                "resume_at": a.resume_at,
            }
            for a in result.agents
        ],
        "truncated": result.truncated,
        "budgets": result.raw.get("budgets", []),
        "skipped": [
            {
                "target": s.target,
                "reason": s.reason,
                "permission": s.permission,
                "superseded_by": s.superseded_by,
            }
            for s in result.skipped
        ],
        "skipped_count": result.skipped_count,
        "can_rollback": action.can_rollback,
        "rollback_action_id": action.rollback_action_id,
        "rollback_of_action_id": action.rollback_of_action_id,
        "error_message": action.error_message,
        "policy_version": action.policy_version,
        "decision_id": action.decision_id,
        "trace_id": action.trace_id,
        "created_at": _iso(action.created_at),
        "completed_at": _iso(action.completed_at),
    }


def _iso(ts: Timestamp) -> str:
    moment = when(ts)
    return moment.isoformat() if moment else ""
