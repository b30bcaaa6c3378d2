"""The read RPCs: GetAction, ListActions, ListActionEvents, GetAgent, ListAgents (need
``actions:read``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fleetward.actions.v1 import actions_pb2

from services.actions import access, catalog, convert, errors, paging, store
from services.actions.audit import documents
from services.actions.call import Call
from services.actions.model import Scope
from services.actions.policy_gateway import PolicyGateway
from services.actions.validation import check_id, parse_uuid
from services.common.names import FLEET_PATH, ID_PATTERN
from services.common.status import FieldViolation, invalid_argument
from services.common.subjects import subject_problem


@dataclass(frozen=True)
class Page:
    """Rows of one page and the token of the next (empty on the last page)."""

    rows: list[asyncpg.Record]
    next_page_token: str


def _action_cursor(cursor: list[str] | None) -> tuple[datetime | None, uuid.UUID | None]:
    """The (created_at, action_id) of a ListActions cursor, or INVALID_ARGUMENT.

    Tokens are bound to their filters, not signed: anyone can build one, so every value
    is checked here, down to a time that exists in UTC (``0001-01-01T00:00:00+14:00``
    parses, but is before year 1 in UTC and cannot be sent to PostgreSQL).
    """
    if cursor is None:
        return None, None
    try:
        at = datetime.fromisoformat(cursor[0])
        if at.tzinfo is None:
            raise ValueError("a cursor time has an offset")
        return at.astimezone(UTC), uuid.UUID(cursor[1])
    except (ValueError, IndexError, OverflowError) as exc:
        raise paging.malformed() from exc


def _workspace(value: str, out: list[FieldViolation]) -> uuid.UUID:
    return parse_uuid(value, "workspace_id", out)


# The Timestamps a ListActions filter may hold: 0001-01-01 .. 9999-12-31T23:59:59.999999999Z
# (protobuf's own range; outside it, or with nanos outside 0..999,999,999, the value is no
# time at all).
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799


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


def _subject_filter(value: str, out: list[FieldViolation]) -> None:
    problem = subject_problem(value) if value else None
    if problem is not None:
        out.append(FieldViolation("actor_subject", problem))


class Reads:
    """Read-side queries with the ``actions:read`` check on ``fleet``."""

    def __init__(self, pool: asyncpg.Pool, policy: PolicyGateway) -> None:
        self._pool = pool
        self._policy = policy

    async def _require_read(self, call: Call, workspace_id: uuid.UUID) -> None:
        call.ensure_time_left()
        await access.require(self._policy, call, workspace_id, access.READ, FLEET_PATH)

    async def _require_workspace(self, workspace_id: uuid.UUID) -> None:
        """NOT_FOUND for an unknown workspace (asked only when a list came back empty)."""
        if await store.targets.look_up(self._pool, workspace_id, Scope.FLEET, "") is None:
            raise errors.not_found("workspace", str(workspace_id))

    async def _require_action(
        self, workspace_id: uuid.UUID, action_id: uuid.UUID, asked: str
    ) -> None:
        """NOT_FOUND for an unknown action (asked only when it has no events: a recorded
        action always has some, unless its chain was damaged).
        """
        if await store.actions.get(self._pool, workspace_id, action_id) is None:
            raise errors.not_found("action", asked)

    async def _readable_action(
        self,
        call: Call,
        request: actions_pb2.GetActionRequest | actions_pb2.ListActionEventsRequest,
    ) -> tuple[uuid.UUID, uuid.UUID]:
        """The request's workspace and action ids, valid, and the caller's read permission
        (INVALID_ARGUMENT, then PERMISSION_DENIED, before anything is read).
        """
        out: list[FieldViolation] = []
        workspace_id = _workspace(request.workspace_id, out)
        action_id = parse_uuid(request.action_id, "action_id", out)
        if out:
            raise invalid_argument(out)
        await self._require_read(call, workspace_id)
        return workspace_id, action_id

    async def get_action(self, call: Call, request: actions_pb2.GetActionRequest) -> asyncpg.Record:
        """One audit row."""
        workspace_id, action_id = await self._readable_action(call, request)
        row = await store.actions.get(self._pool, workspace_id, action_id)
        if row is None:
            raise errors.not_found("action", request.action_id)
        return row

    async def list_action_events(
        self, call: Call, request: actions_pb2.ListActionEventsRequest
    ) -> list[asyncpg.Record]:
        """One action's ``action_events`` rows in seq order (as GetAction: NOT_FOUND for an
        unknown action, for a caller who may read the workspace).
        """
        workspace_id, action_id = await self._readable_action(call, request)
        rows = await store.events.of_action(self._pool, workspace_id, action_id)
        if not rows:
            await self._require_action(workspace_id, action_id, request.action_id)
        return rows

    async def list_actions(self, call: Call, request: actions_pb2.ListActionsRequest) -> Page:
        """One page of actions, newest first."""
        out: list[FieldViolation] = []
        workspace_id = _workspace(request.workspace_id, out)
        known = {*catalog.registry(), "rollback"}
        if request.action_type and request.action_type not in known:
            out.append(FieldViolation("action_type", f"must be one of {', '.join(sorted(known))}"))
        if request.target_id:
            check_id(request.target_id, "target_id", out)
        _subject_filter(request.actor_subject, out)
        status = convert.ACTION_STATUS_NAMES.get(request.status)
        if request.status and status is None:
            out.append(FieldViolation("status", "unknown status"))
        after, before = _when(request, "created_after", out), _when(request, "created_before", out)
        if out:
            raise invalid_argument(out)
        size = paging.page_size(request.page_size)
        filters: Mapping[str, Any] = {
            "workspace_id": str(workspace_id),
            "action_type": request.action_type,
            "status": status,
            "actor_subject": request.actor_subject,
            "target_id": request.target_id,
            "created_after": documents.iso(after),
            "created_before": documents.iso(before),
        }
        cursor = paging.decode(request.page_token, filters)
        await self._require_read(call, workspace_id)
        cursor_at, cursor_id = _action_cursor(cursor)
        rows = await store.history.page(
            self._pool,
            workspace_id,
            {
                "action_type": request.action_type,
                "status": status,
                "actor_subject": request.actor_subject,
                "target_id": request.target_id,
                "created_after": after,
                "created_before": before,
            },
            None if cursor_at is None or cursor_id is None else (cursor_at, cursor_id),
            size + 1,
        )
        if not rows:
            await self._require_workspace(workspace_id)  # an empty page, or no such workspace
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = paging.encode(filters, [last["created_at"].isoformat(), str(last["action_id"])])
        return Page(list(rows[:size]), token)

    async def get_agent(self, call: Call, request: actions_pb2.GetAgentRequest) -> asyncpg.Record:
        """One agent with its own and effective budget."""
        out: list[FieldViolation] = []
        workspace_id = _workspace(request.workspace_id, out)
        check_id(request.agent_id, "agent_id", out)
        if out:
            raise invalid_argument(out)
        await self._require_read(call, workspace_id)
        row = await store.agents.get_with_budgets(self._pool, workspace_id, request.agent_id)
        if row is None:
            raise errors.not_found("agent", request.agent_id)
        return row

    async def list_agents(self, call: Call, request: actions_pb2.ListAgentsRequest) -> Page:
        """One page of agents by agent_id."""
        out: list[FieldViolation] = []
        workspace_id = _workspace(request.workspace_id, out)
        check_id(request.department_id, "department_id", out, required=False)
        status = convert.AGENT_STATUS_NAMES.get(request.status)
        if request.status and status is None:
            out.append(FieldViolation("status", "unknown status"))
        if out:
            raise invalid_argument(out)
        size = paging.page_size(request.page_size)
        filters = {
            "workspace_id": str(workspace_id),
            "department_id": request.department_id,
            "status": status,
        }
        cursor = paging.decode(request.page_token, filters)
        await self._require_read(call, workspace_id)
        after = None if cursor is None or not cursor else cursor[0]
        if after is not None and not ID_PATTERN.fullmatch(after):
            raise paging.malformed()
        rows = await store.agents.page_with_budgets(
            self._pool, workspace_id, request.department_id or None, status, after, size + 1
        )
        if not rows:
            await self._require_workspace(workspace_id)  # an empty page, or no such workspace
        token = paging.encode(filters, [rows[size - 1]["agent_id"]]) if len(rows) > size else ""
        return Page(list(rows[:size]), token)
