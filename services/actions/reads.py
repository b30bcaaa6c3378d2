"""The read RPCs: GetAction, ListActions, ListActionEvents, GetAgent, ListAgents (need
``actions:read`` on the workspace's fleet). Their requests arrive validated
(:mod:`services.actions.read_commands`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import asyncpg

from services.actions import access, errors, paging, store
from services.actions.call import Call
from services.actions.model import ActionRecord, Scope
from services.actions.policy_gateway import PolicyGateway
from services.actions.read_commands import ActionRef, AgentRef, PageQuery
from services.common.names import FLEET_PATH, ID_PATTERN

R = TypeVar("R")


@dataclass(frozen=True)
class Page(Generic[R]):
    """Rows of one page and the token of the next (empty on the last page)."""

    rows: list[R]
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

    async def get_action(self, call: Call, ref: ActionRef) -> ActionRecord:
        """One audit row."""
        await self._require_read(call, ref.workspace_id)
        row = await store.actions.get(self._pool, ref.workspace_id, ref.action_id)
        if row is None:
            raise errors.not_found("action", ref.asked)
        return row

    async def list_action_events(self, call: Call, ref: ActionRef) -> list[asyncpg.Record]:
        """One action's ``action_events`` rows in seq order (as GetAction: NOT_FOUND for an
        unknown action, for a caller who may read the workspace).
        """
        await self._require_read(call, ref.workspace_id)
        rows = await store.events.of_action(self._pool, ref.workspace_id, ref.action_id)
        if not rows:
            await self._require_action(ref.workspace_id, ref.action_id, ref.asked)
        return rows

    async def list_actions(self, call: Call, query: PageQuery) -> Page[ActionRecord]:
        """One page of actions, newest first."""
        await self._require_read(call, query.workspace_id)
        cursor_at, cursor_id = _action_cursor(query.cursor)
        size = query.page_size
        rows = await store.history.page(
            self._pool,
            query.workspace_id,
            query.filters,
            None if cursor_at is None or cursor_id is None else (cursor_at, cursor_id),
            size + 1,
        )
        if not rows:
            await self._require_workspace(query.workspace_id)  # empty, or no such workspace
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            cursor = [last.created_at.isoformat(), str(last.action_id)]
            token = paging.encode(query.binding, cursor)
        return Page(list(rows[:size]), token)

    async def get_agent(self, call: Call, ref: AgentRef) -> asyncpg.Record:
        """One agent with its own and effective budget."""
        await self._require_read(call, ref.workspace_id)
        row = await store.agents.get_with_budgets(self._pool, ref.workspace_id, ref.agent_id)
        if row is None:
            raise errors.not_found("agent", ref.agent_id)
        return row

    async def list_agents(self, call: Call, query: PageQuery) -> Page[asyncpg.Record]:
        """One page of agents by agent_id."""
        await self._require_read(call, query.workspace_id)
        after = None if not query.cursor else query.cursor[0]
        if after is not None and not ID_PATTERN.fullmatch(after):
            raise paging.malformed()
        size = query.page_size
        rows = await store.agents.page_with_budgets(
            self._pool,
            query.workspace_id,
            query.filters["department_id"],
            query.filters["status"],
            after,
            size + 1,
        )
        if not rows:
            await self._require_workspace(query.workspace_id)  # empty, or no such workspace
        token = (
            paging.encode(query.binding, [rows[size - 1]["agent_id"]]) if len(rows) > size else ""
        )
        return Page(list(rows[:size]), token)
