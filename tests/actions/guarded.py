"""A policy with denies on single agents, its servers and workspaces, for the tests of
"authorize what changes" (a deny on an agent holds at every scope and through rollback).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from fleetward.client import AsyncActionsClient, ClientConfig, RetryPolicy

from tests.conftest import Secrets
from tests.servers import running_action_server, running_policy_server, write_test_policy

# The demo policy's deny (operators may not pause the code-review agents), and roles
# that reach further: frank pauses the whole fleet except those agents; paula may pause
# anything but resume nothing; eve sets budgets in engineering only.
GUARD_LINES = (
    "p, operator, *, fleet/departments/engineering/agents/eng-review-*, actions:pause_agent, deny",
    "p, fleetop, *, fleet, actions:pause_agent, allow",
    "p, fleetop, *, fleet/**, actions:pause_agent, allow",
    "p, fleetop, *, fleet/**, actions:resume_agent, allow",
    "p, fleetop, *, fleet/**, actions:rollback, allow",
    "p, fleetop, *, fleet/departments/engineering/agents/eng-review-*, actions:pause_agent, deny",
    "p, pauser, *, fleet, actions:pause_agent, allow",
    "p, pauser, *, fleet/**, actions:pause_agent, allow",
    "g, fleetop, viewer, *",
    "g, pauser, viewer, *",
    "p, budgeteer, *, fleet/departments/engineering/**, actions:set_budget, allow",
    "p, budgeteer, *, fleet/departments/engineering/**, actions:rollback, allow",
    # Agents named zz-* anywhere: operators may not pause them (the answer-size test).
    "p, operator, *, fleet/departments/*/agents/zz-*, actions:pause_agent, deny",
    "g, budgeteer, viewer, *",
    "g, frank, fleetop, *",
    "g, paula, pauser, *",
    "g, eve, budgeteer, *",
)
ENGINEERING = ("eng-code-1", "eng-code-2", "eng-review-1", "eng-review-2")
SUPPORT = ("sup-chat-1",)
FAST = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.2)


@dataclass(frozen=True)
class Guarded:
    """The action service behind the guarded policy, and a way to call it as anyone."""

    target: str
    policy_target: str
    secrets: Secrets

    def client(self, subject: str, *, retry: RetryPolicy = FAST) -> AsyncActionsClient:
        """The real async client, acting as ``subject``."""
        config = ClientConfig(
            target=self.target,
            token=self.secrets.user_token(subject),
            retry=retry,
            default_deadline=30,
        )
        return AsyncActionsClient(config)


def guarded_policy(directory: Path, extra: tuple[str, ...] = ()) -> Path:
    """The test policy plus :data:`GUARD_LINES`."""
    return write_test_policy(directory, [*GUARD_LINES, *extra])


@contextlib.asynccontextmanager
async def guarded_servers(
    database_dsn: str, policy_dir: Path, secrets: Secrets, **settings: Any
) -> AsyncIterator[Guarded]:
    """A policy service on ``policy_dir`` and an action service using it."""
    async with (
        running_policy_server(policy_dir, secrets) as policy_target,
        running_action_server(
            database_dsn, policy_target, secrets, policy_timeout_ms=5000, **settings
        ) as target,
    ):
        yield Guarded(target, policy_target, secrets)


async def create_workspace(
    pool: asyncpg.Pool, agents: Mapping[str, str] | None = None, *, also: Sequence[str] = ()
) -> uuid.UUID:
    """A fresh workspace whose agents (id -> department) default to the guarded ones; the
    departments are the agents' and those in ``also``."""
    if agents is None:
        agents = {**dict.fromkeys(ENGINEERING, "engineering"), **dict.fromkeys(SUPPORT, "support")}
    ws = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"g-{ws.hex}")
        await conn.execute(
            "INSERT INTO departments (workspace_id, department_id, name) "
            "SELECT $1, d, d FROM unnest($2::text[]) AS d",
            ws,
            sorted({*agents.values(), *also}),
        )
        await conn.execute(
            "INSERT INTO agents (workspace_id, agent_id, department_id) "
            "SELECT $1, a, d FROM unnest($2::text[], $3::text[]) AS x (a, d)",
            ws,
            list(agents),
            list(agents.values()),
        )
    return ws


async def statuses(pool: asyncpg.Pool, ws: uuid.UUID) -> dict[str, str]:
    """agent id -> status."""
    rows = await pool.fetch("SELECT agent_id, status FROM agents WHERE workspace_id = $1", ws)
    return {r["agent_id"]: r["status"] for r in rows}
