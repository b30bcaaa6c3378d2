"""Fixtures of the client tests: a fake channel for unit tests, real servers for the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.client.cli_runner import EnvFor
from tests.client.fake_channel import FakeActionService, fake_service
from tests.client.servers import Either, actions_client, policy_client
from tests.conftest import NewWorkspace, Secrets, Workspace
from tests.servers import running_action_server, running_policy_server, write_test_policy

Connect = Callable[[str], Awaitable[Either]]


@pytest.fixture
def fake() -> Iterator[FakeActionService]:
    """A sync ActionsClient on grpcio-testing's channel, with fast retries."""
    yield from fake_service()


@pytest.fixture(scope="session")
async def client_policy_target(
    tmp_path_factory: pytest.TempPathFactory, dev_secrets: Secrets
) -> AsyncIterator[str]:
    """The real policy service with the test policy (demo users in every workspace)."""
    policy_dir: Path = write_test_policy(tmp_path_factory.mktemp("client-policies"))
    async with running_policy_server(policy_dir, dev_secrets) as target:
        yield target


@pytest.fixture(scope="session")
async def client_action_target(
    database_dsn: str, client_policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[str]:
    """The real action service on the session database."""
    async with running_action_server(database_dsn, client_policy_target, dev_secrets) as target:
        yield target


@pytest.fixture(params=["async", "sync"])
async def connect(
    request: pytest.FixtureRequest, client_action_target: str, dev_secrets: Secrets
) -> AsyncIterator[Connect]:
    """``await connect("bob")``: an actions client (async, then sync) acting as bob."""
    made: list[Either] = []

    async def make(subject: str) -> Either:
        client = actions_client(
            client_action_target, dev_secrets.user_token(subject), sync=request.param == "sync"
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture(params=["async", "sync"])
async def policy(
    request: pytest.FixtureRequest, client_policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[Either]:
    """A policy client (async, then sync) with a service token."""
    client = policy_client(
        client_policy_target,
        dev_secrets.service_token("client-tests"),
        sync=request.param == "sync",
    )
    yield client
    await client.close()


@pytest.fixture
async def ws(new_workspace: NewWorkspace) -> Workspace:
    """This test's own workspace."""
    return await new_workspace()


@pytest.fixture
def env_for(client_action_target: str, client_policy_target: str, dev_secrets: Secrets) -> EnvFor:
    """``env_for("bob", ws)``: FLEETWARD_* variables for a user in a workspace."""

    def make(subject: str, workspace: Workspace | None = None) -> dict[str, str]:
        env = {
            "FLEETWARD_TARGET": client_action_target,
            "FLEETWARD_POLICY_TARGET": client_policy_target,
            "FLEETWARD_TOKEN": dev_secrets.user_token(subject),
            "FLEETWARD_POLICY_TOKEN": dev_secrets.service_token("cli-tests"),
        }
        if workspace is not None:
            env["FLEETWARD_WORKSPACE"] = str(workspace.id)
        return env

    return make
