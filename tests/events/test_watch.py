"""WatchActions: replay then live tail, exactly once and in order, resumable, access-checked."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import prometheus_client
import pytest
from fleetward.actions.v1 import actions_pb2

from services.actions.server import ActionServer
from services.policy.server import build_server as build_policy_server
from services.policy.settings import PolicySettings
from tests.actions.helpers import Api, details
from tests.conftest import NewWorkspace, Secrets
from tests.servers import running_action_server_handle, write_test_policy

WatchCall = Any  # grpc.aio.UnaryStreamCall[WatchActionsRequest, ActionEvent]


def watch(
    api: Api,
    subject: str,
    workspace: uuid.UUID | str,
    after_seq: int = 0,
    *,
    live_only: bool = False,
) -> WatchCall:
    """Open a WatchActions stream (no deadline: it is long-lived)."""
    return api.stub.WatchActions(
        actions_pb2.WatchActionsRequest(
            workspace_id=str(workspace), after_seq=after_seq, live_only=live_only
        ),
        metadata=api.auth(subject),
    )


async def read_until(call: WatchCall, last_seq: int, limit_s: float = 60) -> list[Any]:
    """Events from ``call`` until one with ``seq >= last_seq``."""
    events: list[Any] = []

    async def collect() -> None:
        while not events or events[-1].seq < last_seq:
            event = await call.read()
            assert event is not grpc.aio.EOF, f"stream ended after {len(events)} events"
            events.append(event)

    await asyncio.wait_for(collect(), limit_s)
    return events


async def head(pool: asyncpg.Pool, workspace: uuid.UUID) -> int:
    """The workspace's last seq."""
    value = await pool.fetchval(
        "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1", workspace
    )
    return int(value)


async def pause_each(api: Api, workspace: uuid.UUID, agents: list[str]) -> list[str]:
    """Pause every agent, all at once; the action ids."""
    return list(await asyncio.gather(*(pause_one(api, workspace, a) for a in agents)))


async def pause_one(api: Api, workspace: uuid.UUID, agent: str, attempts: int = 5) -> str:
    """Pause ``agent``; the action id. UNAVAILABLE (the database pool was busy past the
    request's wait, as hundreds of concurrent calls on a loaded machine can make it) is
    retried under the same request id, as the client library does.
    """
    request_id = str(uuid.uuid4())
    for attempt in range(1, attempts + 1):
        try:
            done = await api.execute(
                "alice", workspace, "pause_agent", target=agent, request_id=request_id, deadline=120
            )
            return done.action_id
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts:
                raise
            await asyncio.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def assert_exact_sequence(events: list[Any], first: int, last: int) -> None:
    assert [e.seq for e in events] == list(range(first, last + 1))


async def test_watcher_sees_every_event_of_500_concurrent_actions_once_in_order(
    events_api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace(agents_per_department=260)
    agents = sorted(ws.agents)
    # Some history first, so the stream replays before it tails.
    early = await pause_each(events_api, ws.id, agents[:20])
    live = watch(events_api, "carol", ws.id)
    # A consumer that reads nothing until the end: it must hold up neither writers nor
    # the other stream (each stream reads the table at its own pace).
    lagging = watch(events_api, "bob", ws.id)
    concurrent = await pause_each(events_api, ws.id, agents[20:520])
    assert len(concurrent) == 500
    last = await head(pool, ws.id)
    assert last == 3 * 520

    for call in (live, lagging):
        events = await read_until(call, last)
        call.cancel()
        assert_exact_sequence(events, 1, last)
        by_action: dict[str, list[str]] = defaultdict(list)
        for event in events:
            assert event.workspace_id == str(ws.id)
            by_action[event.action.action_id].append(event.event_type)
        assert set(by_action) == {*early, *concurrent}
        assert all(
            types == ["action.pending", "action.in_progress", "action.completed"]
            for types in by_action.values()
        )


async def test_event_carries_the_action_snapshot_and_chain_hash(
    events_api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    action = await events_api.execute(
        "bob", ws.id, "pause_agent", target="sup-chat-1", duration_minutes=15
    )
    call = watch(events_api, "carol", ws.id)
    events = await read_until(call, 3)
    call.cancel()
    completed = events[-1]
    assert completed.event_type == "action.completed"
    assert completed.action == action
    stored = await pool.fetchrow(
        "SELECT hash, created_at FROM action_events WHERE workspace_id = $1 AND seq = 3", ws.id
    )
    assert stored is not None
    assert completed.hash == stored["hash"]
    assert completed.created_at.ToDatetime().isoformat() == (
        stored["created_at"].replace(tzinfo=None).isoformat()
    )
    assert events[0].action.status == actions_pb2.ACTION_STATUS_PENDING


async def test_reconnecting_with_the_last_seq_misses_nothing(
    events_api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace(agents_per_department=20)
    agents = sorted(ws.agents)
    await pause_each(events_api, ws.id, agents[:10])
    first = watch(events_api, "carol", ws.id)
    seen = await read_until(first, 17)  # stop mid-way, as a client that dies would
    first.cancel()
    # Written while nobody watches.
    await pause_each(events_api, ws.id, agents[10:25])
    resumed = watch(events_api, "carol", ws.id, after_seq=seen[-1].seq)
    writes = asyncio.create_task(pause_each(events_api, ws.id, agents[25:40]))
    await writes
    last = await head(pool, ws.id)
    rest = await read_until(resumed, last)
    resumed.cancel()
    assert_exact_sequence(seen + rest, 1, last)
    assert last == 3 * 40


async def test_watch_requires_read_permission_on_the_workspace(
    events_api: Api, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    for workspace in (ws.id, uuid.uuid4()):  # existing or not: the same answer
        call = watch(events_api, "mallory", workspace)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        got = details(info.value)
        assert got.code == grpc.StatusCode.PERMISSION_DENIED
        assert got.reason == "INSUFFICIENT_PERMISSIONS"
        assert got.metadata["required_permission"] == "actions:read"


async def test_watch_of_unknown_workspace_is_not_found_for_a_reader(events_api: Api) -> None:
    call = watch(events_api, "alice", uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert details(info.value).reason == "NOT_FOUND"


async def test_watch_refuses_a_cursor_beyond_the_last_event(
    events_api: Api, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    await pause_each(events_api, ws.id, ["eng-code-1"])
    call = watch(events_api, "carol", ws.id, after_seq=4)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    got = details(info.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "seq 3" in got.field_violations["after_seq"]
    # The head itself is a valid cursor: nothing to replay, live events follow.
    at_head = watch(events_api, "carol", ws.id, after_seq=3)
    await pause_each(events_api, ws.id, ["eng-code-2"])
    assert_exact_sequence(await read_until(at_head, 6), 4, 6)
    at_head.cancel()


@pytest.mark.parametrize(
    ("workspace", "after_seq", "field"),
    [("not-a-uuid", 0, "workspace_id"), (str(uuid.uuid4()), -1, "after_seq")],
)
async def test_watch_validates_its_request(
    events_api: Api, workspace: str, after_seq: int, field: str
) -> None:
    call = watch(events_api, "alice", workspace, after_seq)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    got = details(info.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in got.field_violations


async def test_live_only_skips_the_history_and_then_misses_nothing(
    events_api: Api, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace(agents_per_department=20)
    agents = sorted(ws.agents)
    await pause_each(events_api, ws.id, agents[:5])
    history = await head(pool, ws.id)
    call = watch(events_api, "carol", ws.id, live_only=True)
    try:
        # Nothing comes before the stream attached and something new was appended, and
        # attaching takes a moment: act, one agent at a time, until the stream speaks.
        first_read = asyncio.ensure_future(call.read())
        for agent in agents[5:20]:
            await events_api.execute("alice", ws.id, "pause_agent", target=agent)
            if (await asyncio.wait({first_read}, timeout=1))[0]:
                break
        assert first_read.done(), "a live-only stream sent nothing"
        await pause_each(events_api, ws.id, agents[20:30])  # then a burst
        last = await head(pool, ws.id)
        received = [first_read.result(), *await read_until(call, last)]
    finally:
        call.cancel()
    first = received[0].seq
    assert first > history  # no history
    assert_exact_sequence(received, first, last)  # and from its start on, every event


async def test_live_only_takes_no_cursor(events_api: Api, new_workspace: NewWorkspace) -> None:
    ws = await new_workspace()
    await pause_each(events_api, ws.id, ["eng-code-1"])
    call = watch(events_api, "carol", ws.id, after_seq=2, live_only=True)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    got = details(info.value)
    assert (got.code, got.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert "live_only" in got.field_violations["after_seq"]


async def test_watch_without_token_is_unauthenticated(events_api: Api) -> None:
    call = events_api.stub.WatchActions(
        actions_pb2.WatchActionsRequest(workspace_id=str(uuid.uuid4()))
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _open_streams() -> float:
    value = prometheus_client.REGISTRY.get_sample_value("fleetward_watch_streams_open")
    return value or 0.0


async def test_server_shutdown_ends_streams_cleanly_and_clients_resume(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    events_api: Api,
    pool: asyncpg.Pool,
    new_workspace: NewWorkspace,
) -> None:
    ws = await new_workspace()
    await pause_each(events_api, ws.id, ["eng-code-1"])
    async with running_action_server_handle(database_dsn, events_policy_target, dev_secrets) as own:
        built: ActionServer = own
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            api = Api(channel, dev_secrets)
            before = _open_streams()
            call = watch(api, "carol", ws.id)
            events = await read_until(call, 3)
            assert _open_streams() == before + 1
            await built.stop(grace=5)
            assert await call.read() is grpc.aio.EOF
            assert await call.code() == grpc.StatusCode.OK
            assert _open_streams() == before
    # Resume elsewhere from the last seq received.
    await pause_each(events_api, ws.id, ["eng-code-2"])
    resumed = watch(events_api, "carol", ws.id, after_seq=events[-1].seq)
    rest = await read_until(resumed, 6)
    resumed.cancel()
    assert_exact_sequence(events + rest, 1, 6)


async def test_stream_ends_unauthenticated_when_its_token_expires(
    events_api: Api, dev_secrets: Secrets, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    await pause_each(events_api, ws.id, ["eng-code-1"])
    short = dev_secrets.user_token("carol", ttl_s=2)
    call = events_api.stub.WatchActions(
        actions_pb2.WatchActionsRequest(workspace_id=str(ws.id)),
        metadata=(("authorization", f"Bearer {short}"),),
    )
    assert len(await read_until(call, 3)) == 3
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 30)
    got = details(info.value)
    assert (got.code, got.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_stream_ends_when_read_permission_is_revoked(
    tmp_path: Path,
    database_dsn: str,
    dev_secrets: Secrets,
    events_api: Api,
    new_workspace: NewWorkspace,
) -> None:
    ws = await new_workspace()
    await pause_each(events_api, ws.id, ["eng-code-1"])
    policy_dir = write_test_policy(tmp_path / "policy", [f"g, frank, viewer, {ws.id}"])
    policy = await build_policy_server(
        PolicySettings(
            listen_addr="127.0.0.1:0",
            policy_dir=policy_dir,
            service_jwt_secret=dev_secrets.service_jwt_secret,
            decision_log="off",
            watch=False,
        )
    )
    assert await policy.start()
    try:
        async with running_action_server_handle(
            database_dsn, f"127.0.0.1:{policy.port}", dev_secrets
        ) as built:
            built.watcher.reauthorize_s = 0.1
            async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
                api = Api(channel, dev_secrets)
                call = watch(api, "frank", ws.id)
                assert len(await read_until(call, 3)) == 3
                write_test_policy(policy_dir)  # frank's binding removed
                assert await policy.reloader.reload()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await asyncio.wait_for(call.read(), 30)
    finally:
        await policy.stop(grace=0.5)
    got = details(info.value)
    assert (got.code, got.reason) == (grpc.StatusCode.PERMISSION_DENIED, "INSUFFICIENT_PERMISSIONS")
