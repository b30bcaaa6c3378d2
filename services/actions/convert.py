"""Database rows → proto messages (Action, Agent, ActionType)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fleetward.actions.v1 import actions_pb2
from google.protobuf import timestamp_pb2

from services.actions.audit import documents
from services.actions.catalog import ActionKind
from services.actions.db import Row
from services.actions.model import ActionRecord, ActionStatus, AgentStatus
from services.actions.permissions import DENIED_IDS_IN_ANSWER, Access
from services.actions.validation import SCOPE_VALUES

ACTION_STATUS = {
    ActionStatus.PENDING: actions_pb2.ACTION_STATUS_PENDING,
    ActionStatus.IN_PROGRESS: actions_pb2.ACTION_STATUS_IN_PROGRESS,
    ActionStatus.COMPLETED: actions_pb2.ACTION_STATUS_COMPLETED,
    ActionStatus.FAILED: actions_pb2.ACTION_STATUS_FAILED,
    ActionStatus.ROLLED_BACK: actions_pb2.ACTION_STATUS_ROLLED_BACK,
    ActionStatus.DENIED: actions_pb2.ACTION_STATUS_DENIED,
}
ACTION_STATUS_NAMES = {v: k for k, v in ACTION_STATUS.items()}
AGENT_STATUS = {
    AgentStatus.ACTIVE: actions_pb2.AGENT_STATUS_ACTIVE,
    AgentStatus.PAUSED: actions_pb2.AGENT_STATUS_PAUSED,
    AgentStatus.RETIRED: actions_pb2.AGENT_STATUS_RETIRED,
}
AGENT_STATUS_NAMES = {v: k for k, v in AGENT_STATUS.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _set_time(field: timestamp_pb2.Timestamp, value: datetime) -> None:
    """``field.FromDatetime(value)`` (naive means UTC), in integers, at a third of the cost."""
    delta = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    field.seconds = delta.days * 86400 + delta.seconds
    field.nanos = delta.microseconds * 1000


def action(row: Row) -> actions_pb2.Action:
    """An audit row (or a validate_only preview) as an Action."""
    if isinstance(row, ActionRecord):
        row = row.columns
    msg = actions_pb2.Action(
        action_id=str(row["action_id"] or ""),
        workspace_id=str(row["workspace_id"]),
        action_type=row["action_type"],
        scope=SCOPE_VALUES[row["scope"]],
        target_id=row["target_id"],
        reason=row["reason"],
        # A status this version does not know (written by a newer replica during a rolling
        # deploy) reads as UNSPECIFIED rather than failing every read and watch stream.
        status=ACTION_STATUS.get(row["status"], actions_pb2.ACTION_STATUS_UNSPECIFIED),
        error_message=row["error_message"] or "",
        actor=actions_pb2.Actor(
            subject=row["actor_user_id"],
            roles=[r for r in (row["actor_role"] or "").split(",") if r],
        ),
        can_rollback=row["can_rollback"],
        rollback_action_id=str(row["rollback_action_id"] or ""),
        rollback_of_action_id=str(row["rollback_of_action_id"] or ""),
        policy_version=row["policy_version"] or "",
        decision_id=row["decision_id"] or "",
        request_id=row["request_id"],
        trace_id=row["trace_id"] or "",
    )
    # Written in place (no temporary Struct/Timestamp and CopyFrom): a 50-row page
    # converts in about half the time.
    if row["action_params"] is not None:
        msg.params.update(row["action_params"])
    if row["result"] is not None:
        msg.result.update(row["result"])
    for name in ("created_at", "started_at", "completed_at", "rolled_back_at"):
        if row[name] is not None:
            _set_time(getattr(msg, name), row[name])
    return msg


def to_event(workspace_id: uuid.UUID, row: Row) -> actions_pb2.ActionEvent:
    """One ``action_events`` row as an ActionEvent."""
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(row["created_at"])
    return actions_pb2.ActionEvent(
        workspace_id=str(workspace_id),
        seq=row["seq"],
        event_type=row["event_type"],
        action=action(documents.payload_row(row["payload"])),
        created_at=created,
        hash=row["hash"],
    )


def event_bytes(workspace_id: uuid.UUID, row: Row) -> bytes:
    """One ``action_events`` row as the bytes of its ActionEvent (what a stream sends)."""
    return to_event(workspace_id, row).SerializeToString()


def agent(row: Row) -> actions_pb2.Agent:
    """An agents row (joined with its budgets) as an Agent."""
    msg = actions_pb2.Agent(
        agent_id=row["agent_id"],
        department_id=row["department_id"],
        status=AGENT_STATUS[row["status"]],
        generation=row["generation"],
        last_action_id=str(row["last_action_id"] or ""),
        workspace_id=str(row["workspace_id"]),
    )
    if row["monthly_budget_cents"] is not None:
        msg.monthly_budget_cents = row["monthly_budget_cents"]
    if row["effective_budget_cents"] is not None:
        msg.effective_budget_cents = row["effective_budget_cents"]
    for name in ("paused_until", "updated_at", "restart_requested_at"):
        if row[name] is not None:
            _set_time(getattr(msg, name), row[name])
    return msg


def action_type(kind: ActionKind[Any]) -> actions_pb2.ActionType:
    """A catalog entry."""
    return actions_pb2.ActionType(
        name=kind.name,
        description=kind.description,
        allowed_scopes=[SCOPE_VALUES[s] for s in kind.scopes],
        can_rollback=kind.can_rollback,
        required_permission=kind.permission,
        params_message=kind.params_message.DESCRIPTOR.full_name,
    )


def access(answer: Access) -> actions_pb2.CheckAccessResponse:
    """A CheckAccess answer."""
    return actions_pb2.CheckAccessResponse(
        results=[
            actions_pb2.TargetAccess(
                scope=SCOPE_VALUES[t.scope],
                target_id=t.target_id,
                allowed=t.allowed,
                denied=[
                    actions_pb2.AccessDenial(
                        permission=d.permission,
                        reason=d.reason,
                        code=actions_pb2.DenialCode.Value(f"DENIAL_CODE_{d.code}"),
                        denied_count=len(d.denied_agents),
                        denied_agent_ids=d.denied_agents[:DENIED_IDS_IN_ANSWER],
                    )
                    for d in t.denied
                ],
            )
            for t in answer.results
        ],
        policy_version=answer.policy_version,
        roles=answer.roles,
    )
