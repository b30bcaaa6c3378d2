"""Watch streams cannot exhaust the service: open streams are capped per subject and per
process, a request never waits forever for a database connection, and every stream of a
workspace shares one reader of its events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from services.actions.server import ActionServer
from tests.actions.helpers import Api, details
from tests.conftest import NewWorkspace, Secrets
from tests.servers import running_action_server_handle


@contextlib.asynccontextmanager
async def _server(
    database_dsn: str, policy: str, secrets: Secrets, **settings: Any
) -> AsyncIterator[tuple[ActionServer, Api]]:
    async with contextlib.AsyncExitStack() as stack:
        built = await stack.enter_async_context(
            running_action_server_handle(database_dsn, policy, secrets, **settings)
        )
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
        )
        yield built, Api(channel, secrets)


def _open(api: Api, subject: str, ws: uuid.UUID) -> Any:
    """A watch stream (the server counts it once its handler runs: see ``_wait_open``)."""
    return api.stub.WatchActions(
        actions_pb2.WatchActionsRequest(workspace_id=str(ws)), metadata=api.auth(subject)
    )


async def _refusal(api: Api, subject: str, ws: uuid.UUID) -> tuple[grpc.StatusCode, str, str]:
    call = _open(api, subject, ws)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(call.read(), 10)
    d = details(err.value)
    return d.code, d.reason, d.metadata.get("scope", "")


async def test_open_streams_are_capped_per_subject_and_per_process(
    database_dsn: str, events_policy_target: str, dev_secrets: Secrets, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    async with _server(
        database_dsn,
        events_policy_target,
        dev_secrets,
        watch_max_streams=5,
        watch_max_streams_per_subject=3,
    ) as (built, api):
        carols = [_open(api, "carol", ws.id) for _ in range(3)]
        await _wait_open(built, 3)
        assert await _refusal(api, "carol", ws.id) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_STREAMS",
            "subject",
        )
        bobs = [_open(api, "bob", ws.id) for _ in range(2)]
        await _wait_open(built, 5)
        assert await _refusal(api, "alice", ws.id) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_STREAMS",
            "process",
        )
        # One workspace, five streams, one reader.
        assert built.watcher.feeds == 1
        for call in carols[:1]:
            call.cancel()
        await _wait_open(built, 4)
        again = _open(api, "carol", ws.id)  # a slot is free again
        await _wait_open(built, 5)
        for call in [*carols, *bobs, again]:
            call.cancel()
        await _wait_open(built, 0)
        assert built.watcher.feeds == 0  # the last stream to leave stopped the reader


async def _wait_open(built: ActionServer, count: int) -> None:
    for _ in range(200):
        if built.watcher.open_streams == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{built.watcher.open_streams} streams open, expected {count}")


async def test_waiting_for_a_database_connection_ends_in_unavailable(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
) -> None:
    ws = await new_workspace()
    async with (
        _server(
            database_dsn,
            events_policy_target,
            dev_secrets,
            pool_size=1,
            pool_acquire_timeout_s=0.3,
        ) as (_, api),
        pool.acquire() as blocker,
    ):
        # The only connection: held by an action waiting for this row lock.
        txn = blocker.transaction()
        await txn.start()
        await blocker.execute(
            "SELECT 1 FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-1' FOR UPDATE",
            ws.id,
        )
        held = asyncio.create_task(
            api.execute("bob", ws.id, "pause_agent", target="eng-code-1", deadline=30)
        )
        await asyncio.sleep(0.5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.execute("bob", ws.id, "pause_agent", target="eng-code-2", deadline=10)
        await txn.rollback()
        done = await held
    d = details(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
    assert done.status == actions_pb2.ACTION_STATUS_COMPLETED
