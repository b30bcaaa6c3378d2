"""The read RPCs' requests, validated into commands before any domain code sees them.

Every field is checked here (INVALID_ARGUMENT naming each bad field), then the page
token is checked against the filters it was issued for. What a cursor holds is checked
after the caller's read permission (:mod:`services.actions.reads`): a token anyone can
build says nothing to someone who may not read the workspace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetward.actions.v1 import actions_pb2

from services.actions import catalog, convert, paging
from services.actions.audit import documents
from services.actions.validation import check_id, parse_uuid
from services.common.status import FieldViolation, invalid_argument
from services.common.subjects import subject_problem

# The Timestamps a ListActions filter may hold: 0001-01-01 .. 9999-12-31T23:59:59.999999999Z
# (protobuf's own range; outside it, or with nanos outside 0..999,999,999, the value is no
# time at all).
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799


@dataclass(frozen=True)
class ActionRef:
    """GetAction and ListActionEvents: one action, and its id as the caller wrote it."""

    workspace_id: uuid.UUID
    action_id: uuid.UUID
    asked: str


@dataclass(frozen=True)
class AgentRef:
    """GetAgent: one agent."""

    workspace_id: uuid.UUID
    agent_id: str


@dataclass(frozen=True)
class PageQuery:
    """ListActions and ListAgents: the workspace, the filters that are set, the page size,
    the cursor of the page token (None: the first page) and what the token is bound to.
    """

    workspace_id: uuid.UUID
    filters: dict[str, Any]
    page_size: int
    cursor: list[str] | None
    binding: dict[str, Any]


@dataclass(frozen=True)
class WatchCommand:
    """WatchActions: where a stream starts."""

    workspace_id: uuid.UUID
    after_seq: int
    live_only: bool


def action_ref(
    request: actions_pb2.GetActionRequest | actions_pb2.ListActionEventsRequest,
) -> ActionRef:
    """The workspace and action ids, valid."""
    out: list[FieldViolation] = []
    workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
    action_id = parse_uuid(request.action_id, "action_id", out)
    if out:
        raise invalid_argument(out)
    return ActionRef(workspace_id, action_id, request.action_id)


def agent_ref(request: actions_pb2.GetAgentRequest) -> AgentRef:
    """The workspace and agent ids, valid."""
    out: list[FieldViolation] = []
    workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
    check_id(request.agent_id, "agent_id", out)
    if out:
        raise invalid_argument(out)
    return AgentRef(workspace_id, request.agent_id)


def list_actions(request: actions_pb2.ListActionsRequest) -> PageQuery:
    """ListActions' filters (unset ones falsy), page size and cursor."""
    out: list[FieldViolation] = []
    workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
    known = {*catalog.registry(), "rollback"}
    if request.action_type and request.action_type not in known:
        out.append(FieldViolation("action_type", f"must be one of {', '.join(sorted(known))}"))
    if request.target_id:
        check_id(request.target_id, "target_id", out)
    problem = subject_problem(request.actor_subject) if request.actor_subject else None
    if problem is not None:
        out.append(FieldViolation("actor_subject", problem))
    status = convert.ACTION_STATUS_NAMES.get(request.status)
    if request.status and status is None:
        out.append(FieldViolation("status", "unknown status"))
    after, before = _when(request, "created_after", out), _when(request, "created_before", out)
    if out:
        raise invalid_argument(out)
    size = paging.page_size(request.page_size)
    filters = {
        "action_type": request.action_type,
        "status": status,
        "actor_subject": request.actor_subject,
        "target_id": request.target_id,
        "created_after": after,
        "created_before": before,
    }
    binding = {
        "workspace_id": str(workspace_id),
        **filters,
        "created_after": documents.iso(after),
        "created_before": documents.iso(before),
    }
    return PageQuery(
        workspace_id, filters, size, paging.decode(request.page_token, binding), binding
    )


def list_agents(request: actions_pb2.ListAgentsRequest) -> PageQuery:
    """ListAgents' filters (unset ones None), page size and cursor."""
    out: list[FieldViolation] = []
    workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
    check_id(request.department_id, "department_id", out, required=False)
    status = convert.AGENT_STATUS_NAMES.get(request.status)
    if request.status and status is None:
        out.append(FieldViolation("status", "unknown status"))
    if out:
        raise invalid_argument(out)
    size = paging.page_size(request.page_size)
    binding = {
        "workspace_id": str(workspace_id),
        "department_id": request.department_id,
        "status": status,
    }
    filters = {"department_id": request.department_id or None, "status": status}
    return PageQuery(
        workspace_id, filters, size, paging.decode(request.page_token, binding), binding
    )


def watch(request: actions_pb2.WatchActionsRequest) -> WatchCommand:
    """Where the stream starts (``live_only`` only without an ``after_seq``)."""
    out: list[FieldViolation] = []
    workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
    if request.after_seq < 0:
        out.append(FieldViolation("after_seq", "must be 0 or more"))
    elif request.after_seq and request.live_only:
        out.append(FieldViolation("after_seq", "must be 0 with live_only"))
    if out:
        raise invalid_argument(out)
    return WatchCommand(workspace_id, request.after_seq, request.live_only)


def _when(
    msg: actions_pb2.ListActionsRequest, name: str, out: list[FieldViolation]
) -> datetime | None:
    if not msg.HasField(name):  # type: ignore[arg-type]
        return None
    stamp = getattr(msg, name)
    if not MIN_SECONDS <= stamp.seconds <= MAX_SECONDS or not 0 <= stamp.nanos < 10**9:
        out.append(FieldViolation(name, "must be a time between 0001-01-01 and 9999-12-31 (UTC)"))
        return None
    value: datetime = stamp.ToDatetime(tzinfo=UTC)
    return value
