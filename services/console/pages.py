"""The workspace pages: fleet, activity and an action's detail (sign-in and the home page
are :mod:`services.console.entry`).

Each page is rendered on the server from the caller's own reads; ``?fragment=1`` renders
only the part that live refresh swaps in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from fleetward.actions.v1 import actions_pb2
from fleetward.client import AsyncActionsClient, FleetwardError, Scope
from starlette.requests import Request
from starlette.responses import Response

from services.console.context import PageCall, page_call
from services.console.views import (
    LABELS,
    SCOPES,
    AgentRow,
    Button,
    DepartmentGroup,
    action_summary,
    agent_row,
    buttons_for,
    enum_name,
    group_by_department,
)

# The fleet page shows at most this many agents (filter by department for more).
FLEET_LIMIT = 1000
# CheckAccess answers at most this many targets per call.
ACCESS_BATCH = 500
AGENT_STATUSES = ("active", "paused", "retired")
T = TypeVar("T")
ACTION_STATUSES = ("pending", "in_progress", "completed", "failed", "rolled_back", "denied")


async def _check_access(
    client: AsyncActionsClient, workspace_id: str, targets: Sequence[tuple[Scope, str]]
) -> tuple[dict[tuple[str, str], actions_pb2.TargetAccess], list[str]]:
    """CheckAccess for any number of targets (batches of 500, concurrently)."""
    batches = [list(targets[i : i + ACCESS_BATCH]) for i in range(0, len(targets), ACCESS_BATCH)]
    replies = await asyncio.gather(
        *(client.check_access(workspace_id=workspace_id, targets=b) for b in batches)
    )
    access: dict[tuple[str, str], actions_pb2.TargetAccess] = {}
    roles: list[str] = []
    for batch, reply in zip(batches, replies, strict=True):
        roles = list(reply.roles)
        for (scope, target), result in zip(batch, reply.results, strict=True):
            access[(scope, target)] = result
    return access, roles


async def fleet(request: Request) -> Response:
    """Agents by department, with the buttons the caller may use."""
    page = page_call(request)
    if not isinstance(page, PageCall):
        return page
    console, who, workspace = page.console, page.caller, page.workspace_id
    department = request.query_params.get("department", "").strip()
    status = request.query_params.get("status", "")
    status = status if status in AGENT_STATUSES else ""
    client = page.client
    try:
        catalog = await console.backend.catalog(who)
        listing = client.list_agents(
            workspace_id=workspace,
            department_id=department,
            status=status or None,
            page_size=500,
        )
        agents = [a async for a in _take(listing, FLEET_LIMIT + 1)]
        shown = agents[:FLEET_LIMIT]
        departments = sorted({a.department_id for a in shown})
        targets = [
            (Scope.FLEET, ""),
            *((Scope.DEPARTMENT, d) for d in departments),
            *((Scope.AGENT, a.agent_id) for a in shown),
        ]
        access, roles = await _check_access(client, workspace, targets)
    except FleetwardError as exc:
        return console.error_page(request, exc, workspace)
    groups = _department_groups(shown, catalog, access)
    fleet_buttons: tuple[Button, ...] = buttons_for("fleet", "", catalog, access.get(("fleet", "")))
    values: dict[str, Any] = {
        "caller": who,
        "roles": roles,
        "workspace_id": workspace,
        "page": "fleet",
        "title": "Fleet",
        "groups": groups,
        "fleet_buttons": fleet_buttons,
        "department": department,
        "status": status,
        "statuses": AGENT_STATUSES,
        "truncated": len(agents) > FLEET_LIMIT,
        "limit": FLEET_LIMIT,
        "now": datetime.now(UTC),
    }
    name = "_fleet.html" if request.query_params.get("fragment") == "1" else "fleet.html"
    return console.render(request, name, **values)


def _department_groups(
    agents: Sequence[actions_pb2.Agent],
    catalog: Sequence[actions_pb2.ActionType],
    access: Mapping[tuple[str, str], actions_pb2.TargetAccess],
) -> list[DepartmentGroup]:
    """The fleet page's agents grouped by department, each agent and department with the
    buttons ``access`` enables.
    """
    rows: list[tuple[str, AgentRow]] = [
        (
            a.department_id,
            agent_row(
                a, buttons_for("agent", a.agent_id, catalog, access.get(("agent", a.agent_id)))
            ),
        )
        for a in agents
    ]
    groups = group_by_department(rows)
    for group in groups:
        group.buttons = buttons_for(
            "department",
            group.department_id,
            catalog,
            access.get(("department", group.department_id)),
        )
    return groups


async def _take(source: AsyncIterator[T], limit: int) -> AsyncGenerator[T, None]:
    """The first ``limit`` items of ``source``, closing it after."""
    taken = 0
    try:
        async for item in source:
            yield item
            taken += 1
            if taken >= limit:
                return
    finally:
        if isinstance(source, AsyncGenerator):
            await source.aclose()


def _utc(value: str, name: str, problems: list[str]) -> datetime | None:
    """A ``datetime-local`` field's value: UTC when it names no offset, converted to UTC
    when it does; None when empty, and a problem when it is no date.
    """
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a date, or one that leaves the calendar in UTC
        problems.append(f"{name}: {value!r} is not a date and time (YYYY-MM-DDTHH:MM)")
        return None


async def activity(request: Request) -> Response:
    """ListActions with filters, newest first, one page at a time."""
    page = page_call(request)
    if not isinstance(page, PageCall):
        return page
    console, who, workspace = page.console, page.caller, page.workspace_id
    query = request.query_params
    filters = {
        "action_type": query.get("action_type", "").strip(),
        "status": query.get("status", "") if query.get("status") in ACTION_STATUSES else "",
        "actor": query.get("actor", "").strip(),
        "target": query.get("target", "").strip(),
        "after": query.get("after", "").strip(),
        "before": query.get("before", "").strip(),
    }
    problems: list[str] = []
    after = _utc(filters["after"], "after", problems)
    before = _utc(filters["before"], "before", problems)
    actions: list[dict[str, object]] = []
    next_token = ""
    types: list[str] = []
    try:
        catalog = await console.backend.catalog(who)
        types = [t.name for t in catalog] + ["rollback"]
        if not problems:  # a filter that could not be read lists nothing, not everything
            listed = await page.client.list_actions_page(
                workspace_id=workspace,
                action_type=filters["action_type"],
                status=filters["status"] or None,
                actor_subject=filters["actor"],
                target_id=filters["target"],
                created_after=after,
                created_before=before,
                page_size=50,
                page_token=query.get("page_token", ""),
            )
            actions = [action_summary(a) for a in listed.actions]
            next_token = listed.next_page_token
    except FleetwardError as exc:
        if not exc.field_violations:
            return console.error_page(request, exc, workspace)
        problems.extend(f"{v.field}: {v.description}" for v in exc.field_violations)
    kept = {k: v for k, v in filters.items() if v}
    values: dict[str, Any] = {
        "caller": who,
        "workspace_id": workspace,
        "page": "activity",
        "title": "Activity",
        "filters": filters,
        "types": types,
        "statuses": ACTION_STATUSES,
        "actions": actions,
        "problem": "; ".join(problems),
        "first_page": not query.get("page_token"),
        "next_query": urlencode({**kept, "page_token": next_token}) if next_token else "",
        "first_query": urlencode(kept),
    }
    name = "_activity.html" if query.get("fragment") == "1" else "activity.html"
    return console.render(request, name, **values)


def _rollback_button(
    action: actions_pb2.Action, access: actions_pb2.TargetAccess | None
) -> tuple[bool, str]:
    """Whether the detail page's Rollback is enabled, and why not."""
    status = enum_name(action.status, actions_pb2.ActionStatus, "ACTION_STATUS_")
    if not action.can_rollback:
        return False, f"{action.action_type} cannot be rolled back"
    if action.rollback_action_id:
        return False, f"already rolled back by {action.rollback_action_id}"
    if status != "completed":
        return False, f"only a completed action can be rolled back (this one is {status})"
    denied = {d.permission: d.reason for d in access.denied} if access else {}
    if access is not None and "actions:rollback" in access.allowed:
        return True, "Undo this action (a new, audited rollback action)"
    return False, denied.get("actions:rollback", "requires actions:rollback")


async def action_detail(request: Request) -> Response:
    """One action: who, why, when, the policy decision, the result and its events."""
    page = page_call(request)
    if not isinstance(page, PageCall):
        return page
    console, who, workspace = page.console, page.caller, page.workspace_id
    action_id = request.path_params.get("action_id", "")
    client = page.client
    try:
        action, events = await asyncio.gather(
            client.get_action(workspace_id=workspace, action_id=action_id),
            client.list_action_events(workspace_id=workspace, action_id=action_id),
        )
        scope = SCOPES.get(action.scope)
        access = None
        if scope is not None:
            replies, _ = await _check_access(client, workspace, [(scope, action.target_id)])
            access = replies.get((scope, action.target_id))
    except FleetwardError as exc:
        return console.error_page(request, exc, workspace)
    enabled, why = _rollback_button(action, access)
    values: dict[str, Any] = {
        "caller": who,
        "workspace_id": workspace,
        "page": "action",
        "title": f"Action {action.action_id}",
        "action": action_summary(action),
        "label": LABELS.get(action.action_type, action.action_type),
        "events": [
            {
                "seq": e.seq,
                "event_type": e.event_type,
                "hash": e.hash,
                "created_at": e.created_at.ToDatetime(tzinfo=UTC).isoformat(),
            }
            for e in events
        ],
        "rollback_enabled": enabled,
        "rollback_title": why,
        "trace_url": console.settings.trace_link(action.trace_id),
    }
    name = "_action.html" if request.query_params.get("fragment") == "1" else "action.html"
    return console.render(request, name, **values)
