"""Real policy and action servers for the action service tests (session-wide, port 0)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from services.actions.audit.verify import verify_workspace
from tests.actions.guarded import Guarded, guarded_policy, guarded_servers
from tests.actions.helpers import Api
from tests.conftest import Secrets
from tests.servers import running_action_server, running_policy_server, write_test_policy

# erin is an operator in this workspace only: the tenancy tests' foreign caller.
ERIN_HOME = uuid.UUID("e1e10000-0000-4000-8000-0000000000e1")


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test policy: demo roles, demo users in every workspace, erin in ERIN_HOME only."""
    return write_test_policy(
        tmp_path_factory.mktemp("policies"), [f"g, erin, operator, {ERIN_HOME}"]
    )


@pytest.fixture(scope="session")
async def policy_target(policy_dir: Path, dev_secrets: Secrets) -> AsyncIterator[str]:
    """The real policy service."""
    async with running_policy_server(policy_dir, dev_secrets) as target:
        yield target


@pytest.fixture(scope="session")
async def action_target(
    database_dsn: str, policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[str]:
    """The real action service on the session database."""
    # 5 s policy budget instead of 200 ms: the concurrency suites put hundreds of Executes,
    # the policy service and the action service on one event loop, where queueing alone
    # can pass 200 ms. The budget itself is tested with dedicated servers.
    async with running_action_server(
        database_dsn, policy_target, dev_secrets, policy_timeout_ms=5000
    ) as target:
        yield target


@pytest.fixture(scope="session")
async def channel(action_target: str) -> AsyncIterator[grpc.aio.Channel]:
    """One client channel to the action service."""
    async with grpc.aio.insecure_channel(action_target) as ch:
        yield ch


@pytest.fixture(scope="session")
def api(channel: grpc.aio.Channel, dev_secrets: Secrets) -> Api:
    """The generated stub with per-subject tokens."""
    return Api(channel, dev_secrets)


@pytest.fixture(scope="session")
async def erin_home(pool: asyncpg.Pool) -> uuid.UUID:
    """ERIN_HOME, created once (erin's only workspace)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'erin-home')", ERIN_HOME)
        await conn.execute(
            "INSERT INTO departments (workspace_id, department_id, name) "
            "VALUES ($1, 'support', 'Support')",
            ERIN_HOME,
        )
        await conn.execute(
            "INSERT INTO agents (workspace_id, agent_id, department_id) "
            "VALUES ($1, 'sup-chat-1', 'support')",
            ERIN_HOME,
        )
    return ERIN_HOME


@pytest.fixture(autouse=True)
async def chains_verify(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """After every test, each workspace chain that grew must verify end to end, and its
    rows and targets agree with it (what ``audit verify`` checks)."""
    before = {
        r["workspace_id"]: r["last_seq"]
        for r in await pool.fetch("SELECT workspace_id, last_seq FROM audit_chain_heads")
    }
    yield
    rows = await pool.fetch("SELECT workspace_id, last_seq FROM audit_chain_heads")
    grown = [r["workspace_id"] for r in rows if r["last_seq"] != before.get(r["workspace_id"], 0)]
    async with pool.acquire() as conn:
        for workspace_id in grown:
            result = await verify_workspace(conn, workspace_id)
            assert result.breaks == [], result.breaks


@pytest.fixture(scope="module")
async def guarded(
    database_dsn: str, dev_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Guarded]:
    """Servers under the guarded policy (reviewers denied inside allowed departments), one
    set per test module that asks for them.
    """
    policy_dir = guarded_policy(tmp_path_factory.mktemp("guarded"))
    async with guarded_servers(database_dsn, policy_dir, dev_secrets) as servers:
        yield servers
