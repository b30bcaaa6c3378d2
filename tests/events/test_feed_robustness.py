"""The shared watch feed survives what its streams and its data do to it.

Each test is a way a feed used to leave healthy streams without events and without a
status (they never reconnect), leak a notifier subscription, or spin on the database.
The interleavings are forced with a gate on the feed's head query, on a real server and
real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from services.actions import store
from services.actions.db import init_connection
from services.actions.events.feed import Feed, FeedHub
from services.actions.events.notifier import EventNotifier
from services.actions.server import ActionServer
from tests.actions.helpers import Api, details
from tests.conftest import NewWorkspace, Secrets
from tests.servers import running_action_server_handle


class GatedPool:
    """The watch pool, with the feed's head query held until ``gate`` opens."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.gate = asyncio.Event()
        self.gate.set()
        self.head_queries = 0
        self.fetches = 0

    async def fetchval(self, sql: str, *args: Any) -> Any:
        if "audit_chain_heads" in sql:
            self.head_queries += 1
            await self.gate.wait()
        return await self._pool.fetchval(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.fetches += 1
        return await self._pool.fetch(sql, *args)


@asynccontextmanager
async def server(
    database_dsn: str, policy: str, secrets: Secrets
) -> AsyncIterator[tuple[ActionServer, GatedPool, Api]]:
    async with running_action_server_handle(database_dsn, policy, secrets) as built:
        hub: FeedHub = built.watcher._feeds
        gated = GatedPool(hub._pool)
        hub._pool = gated  # type: ignore[assignment]
        built.watcher._pool = gated  # type: ignore[assignment]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            yield built, gated, Api(channel, secrets)


def watch(api: Api, subject: str, workspace: uuid.UUID, after_seq: int = 0) -> Any:
    request = actions_pb2.WatchActionsRequest(workspace_id=str(workspace), after_seq=after_seq)
    return api.stub.WatchActions(request, metadata=api.auth(subject))


async def head_of(pool: asyncpg.Pool, workspace: uuid.UUID) -> int:
    head = await pool.fetchval(
        "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1", workspace
    )
    return int(head)


async def until(what: str, check: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_client_leaving_while_the_feed_starts_does_not_break_the_others(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
) -> None:
    ws = await new_workspace()
    head = await head_of(pool, ws.id)
    async with server(database_dsn, events_policy_target, dev_secrets) as (built, gated, api):
        gated.gate.clear()
        first = watch(api, "carol", ws.id, head)
        first_read = asyncio.ensure_future(first.read())
        await until("the feed's head query", lambda: gated.head_queries == 1)
        second = watch(api, "bob", ws.id, head)
        second_read = asyncio.ensure_future(second.read())
        await until("both streams open", lambda: built.watcher.open_streams == 2)
        first.cancel()  # the first client goes away while the shared feed starts
        await until("the first stream closed", lambda: built.watcher.open_streams == 1)
        gated.gate.set()
        done = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
        event = await asyncio.wait_for(second_read, 5)
        assert event.action.action_id == done.action_id
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first_read


async def test_an_old_lagged_tail_cannot_stop_the_next_feed(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
) -> None:
    ws = await new_workspace()
    async with server(database_dsn, events_policy_target, dev_secrets) as (built, gated, api):
        hub: FeedHub = built.watcher._feeds
        hub._buffer = 1
        slow = await hub.attach(ws.id)
        other = await hub.attach(ws.id)
        for agent in ("eng-code-1", "eng-code-2"):
            await api.execute("bob", ws.id, "pause_agent", target=agent)
        await until("the slow tail lagging", lambda: slow.lagged)
        await other.take(0)
        await hub.detach(other)  # the old feed keeps running for the lagged tail's stream
        hub._buffer = 100
        gated.gate.clear()
        starting = asyncio.ensure_future(hub.attach(ws.id))
        await until("a new feed's head query", lambda: gated.head_queries == 2)
        await hub.detach(slow)  # the slow stream notices it lagged, while the new feed starts
        gated.gate.set()
        fresh = await starting
        done = await api.execute("bob", ws.id, "resume_agent", target="eng-code-1")
        head = await head_of(pool, ws.id)
        items: list[tuple[int, bytes]] = []
        while not items or items[-1][0] < head:
            assert not fresh.lagged
            items += await fresh.take(5)
        events = [actions_pb2.ActionEvent.FromString(data) for _, data in items]
        assert {e.action.action_id for e in events} == {done.action_id}
        await hub.detach(fresh)
        assert hub.feeds == 0


async def test_feeds_that_cannot_start_leave_nothing_behind(
    database_dsn: str, events_policy_target: str, dev_secrets: Secrets
) -> None:
    async with server(database_dsn, events_policy_target, dev_secrets) as (built, _gated, api):
        before = built.notifier.subscriber_count
        for _ in range(10):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await watch(api, "alice", uuid.uuid4()).read()  # alice may read any workspace
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert built.notifier.subscriber_count == before
        assert built.watcher.feeds == 0
        assert built.watcher.open_streams == 0


async def test_an_event_the_feed_cannot_read_ends_its_streams_with_a_status(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
) -> None:
    ws = await new_workspace()
    async with server(database_dsn, events_policy_target, dev_secrets) as (built, _gated, api):
        first = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
        live = watch(api, "carol", ws.id, await head_of(pool, ws.id))
        reading = asyncio.ensure_future(live.read())
        await until("the live stream attached", lambda: built.watcher.feeds == 1)
        conn = await asyncpg.connect(database_dsn)
        try:
            await init_connection(conn)
            payload = await conn.fetchval(
                "SELECT payload FROM action_events WHERE workspace_id = $1 "
                "ORDER BY seq DESC LIMIT 1",
                ws.id,
            )
            bad = {**payload, "created_at": "not a time"}
            async with conn.transaction():
                await store.events.append(
                    conn, ws.id, [(uuid.UUID(first.action_id), "action.completed", bad)]
                )
        finally:
            await conn.close()
        bad_seq = await head_of(pool, ws.id)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(reading, 10)
        failure = details(err.value)
        assert failure.code == grpc.StatusCode.INTERNAL
        assert failure.metadata.get("correlation_id")
        # The next stream gets a fresh feed, and the events after the bad one.
        after = watch(api, "carol", ws.id, bad_seq)
        reading = asyncio.ensure_future(after.read())
        done = await api.execute("bob", ws.id, "resume_agent", target="eng-code-1")
        event = await asyncio.wait_for(reading, 5)
        assert event.action.action_id == done.action_id
        after.cancel()
        await until("every stream closed", lambda: built.watcher.open_streams == 0)
        assert built.watcher.feeds == 0


async def test_a_chain_head_ahead_of_its_events_does_not_spin(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
) -> None:
    ws = await new_workspace()
    async with server(database_dsn, events_policy_target, dev_secrets) as (_, gated, api):
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
        # What `fleetward audit verify` reports as a head mismatch (the newest event
        # deleted, a partial restore): only past the guard triggers.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE audit_chain_heads SET last_seq = last_seq + 1 WHERE workspace_id = $1",
                ws.id,
            )
        stream = watch(api, "carol", ws.id)
        history = [(await stream.read()).seq for _ in range(3)]
        assert history == sorted(history)
        reads = gated.fetches
        # A rate over a fixed window: no tight re-read loop is the point, and an absence
        # gives no event to wait on.
        await asyncio.sleep(1)
        assert gated.fetches - reads < 5, "the stream re-reads an empty range without pause"
        done = await api.execute("bob", ws.id, "resume_agent", target="eng-code-1")
        event = await asyncio.wait_for(stream.read(), 5)
        assert event.action.action_id == done.action_id
        stream.cancel()


async def test_a_handler_cancelled_while_it_stops_the_feed_ends() -> None:
    """``Feed.stop`` waits for the feed's task; a cancel of the caller must not be eaten."""

    class Idle:
        async def fetchval(self, _sql: str, *_args: Any) -> int:
            return 0

        async def fetch(self, _sql: str, *_args: Any) -> list[Any]:
            await asyncio.sleep(3600)
            return []

    notifier = EventNotifier("postgresql://unused")  # never started: subscriptions only
    feed = Feed(uuid.uuid4(), Idle(), notifier, lambda *_: b"", 10)  # type: ignore[arg-type]
    feed.begin()
    await feed.ready()
    await asyncio.sleep(0)

    async def leave() -> str:
        await feed.stop()
        return "returned"

    task = asyncio.ensure_future(leave())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_watch_the_client_cancels_is_counted_as_cancelled(
    database_dsn: str, events_policy_target: str, dev_secrets: Secrets, new_workspace: NewWorkspace
) -> None:
    """A client ending its stream is a watch's usual end: CANCELLED, not UNKNOWN (which
    reads as a server fault on a dashboard)."""
    from services.common.metrics import RPC_REQUESTS

    method = "/fleetward.actions.v1.ActionService/WatchActions"

    def count(code: str) -> float:
        return float(RPC_REQUESTS.labels(method, code)._value.get())

    ws = await new_workspace()
    async with server(database_dsn, events_policy_target, dev_secrets) as (built, _, api):
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
        before = count("CANCELLED"), count("UNKNOWN")
        stream = watch(api, "carol", ws.id)
        await stream.read()
        stream.cancel()
        await until("the stream closed", lambda: built.watcher.open_streams == 0)
        await until("the stream counted", lambda: count("CANCELLED") > before[0])
        assert count("UNKNOWN") == before[1]
