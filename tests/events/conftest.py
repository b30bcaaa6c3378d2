"""Real policy and action servers for the events and operations tests (port 0)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest

from services.actions.server import ActionServer
from tests.actions.helpers import Api
from tests.conftest import Secrets, migrated_database
from tests.servers import (
    running_action_server,
    running_action_server_handle,
    running_policy_server,
    write_test_policy,
)


@pytest.fixture(scope="session")
def events_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test policy (demo roles; demo users in every workspace)."""
    return write_test_policy(tmp_path_factory.mktemp("events-policies"))


@pytest.fixture(scope="session")
async def events_policy_target(events_policy_dir: Path, dev_secrets: Secrets) -> AsyncIterator[str]:
    """The real policy service."""
    async with running_policy_server(events_policy_dir, dev_secrets) as target:
        yield target


@pytest.fixture(scope="session")
async def events_server(
    database_dsn: str, events_policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[ActionServer]:
    """The real action service on the session database.

    The policy budget is raised from 200 ms: these suites run hundreds of concurrent
    Executes with the policy service, the action service and the clients on one event
    loop, where queueing alone can pass 200 ms (the budget's own tests use their servers).
    """
    async with running_action_server_handle(
        database_dsn, events_policy_target, dev_secrets, policy_timeout_ms=5000
    ) as built:
        yield built


@pytest.fixture(scope="session")
async def events_channel(events_server: ActionServer) -> AsyncIterator[grpc.aio.Channel]:
    """One client channel to the action service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{events_server.port}") as ch:
        yield ch


@pytest.fixture(scope="session")
def events_api(events_channel: grpc.aio.Channel, dev_secrets: Secrets) -> Api:
    """The generated stub with per-subject tokens."""
    return Api(events_channel, dev_secrets)


@dataclass(frozen=True)
class IsolatedDb:
    """A migrated database of one test module, with an action service and a pool on it."""

    dsn: str  # the administrator's
    pool: asyncpg.Pool  # the administrator's
    api: Api
    runtime_dsn: str  # the services' role

    async def new_workspace(self) -> uuid.UUID:
        """A workspace with two departments of three agents each."""
        ws = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"ws-{ws.hex[:12]}"
            )
            await conn.execute(
                "INSERT INTO departments (workspace_id, department_id, name) "
                "VALUES ($1, 'engineering', 'Engineering'), ($1, 'support', 'Support')",
                ws,
            )
            await conn.executemany(
                "INSERT INTO agents (workspace_id, agent_id, department_id) VALUES ($1, $2, $3)",
                [
                    (ws, f"{prefix}-{i}", dept)
                    for dept, prefix in (("engineering", "eng-code"), ("support", "sup-chat"))
                    for i in (1, 2, 3)
                ],
            )
        return ws


@pytest.fixture(scope="module")
async def isolated_db(
    server_dsn: str, role_password: str, events_policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[IsolatedDb]:
    """For tests that damage data on purpose (tampering): nobody else sees their database.
    The service runs as the runtime role; ``dsn`` and ``pool`` are the administrator's."""
    async with migrated_database(server_dsn, role_password) as database:
        dsn = database.admin_dsn
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        assert pool is not None
        try:
            async with (
                running_action_server(
                    database.runtime_dsn, events_policy_target, dev_secrets
                ) as target,
                grpc.aio.insecure_channel(target) as channel,
            ):
                yield IsolatedDb(dsn, pool, Api(channel, dev_secrets), database.runtime_dsn)
        finally:
            await pool.close()
