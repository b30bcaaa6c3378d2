"""watch_actions against the real action service: replay, live tail, resume across a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
import prometheus_client
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.client import (
    ActionsClient,
    AsyncActionsClient,
    ClientConfig,
    PauseAgent,
)

from tests.client.servers import FAST
from tests.conftest import NewWorkspace, Secrets, Workspace
from tests.events.bighistory import EVENTS_PER_ACTION, append_synthetic_actions
from tests.servers import running_action_server_handle


class Watch:
    """One watch_actions stream of either client, read one event at a time."""

    def __init__(
        self,
        target: str,
        token: str,
        workspace: str,
        *,
        sync: bool,
        after_seq: int = 0,
        live_only: bool = False,
    ):
        config = ClientConfig(target=target, token=token, retry=FAST)
        self.sync = sync
        if sync:
            self.client: Any = ActionsClient(config)
            self._events: Any = iter(
                self.client.watch_actions(
                    workspace_id=workspace, after_seq=after_seq, live_only=live_only
                )
            )
        else:
            self.client = AsyncActionsClient(config)
            self._events = aiter(
                self.client.watch_actions(
                    workspace_id=workspace, after_seq=after_seq, live_only=live_only
                )
            )

    async def next(self) -> actions_pb2.ActionEvent:
        """The next event (a blocking iterator is stepped in a thread)."""
        if self.sync:
            return await asyncio.wait_for(asyncio.to_thread(next, self._events), 20)
        return await asyncio.wait_for(anext(self._events), 20)

    async def until_completed(self, action_id: str) -> list[actions_pb2.ActionEvent]:
        """Every event up to and including ``action_id``'s completion."""
        seen = []
        while True:
            event = await self.next()
            seen.append(event)
            if event.action.action_id == action_id and event.event_type == "action.completed":
                return seen

    async def close(self) -> None:
        """End the stream and close the client."""
        if self.sync:
            self._events.close()
            self.client.close()
        else:
            await self._events.aclose()
            await self.client.close()


async def _pause(target: str, token: str, ws: Workspace, agent: str) -> actions_pb2.Action:
    """Pause ``agent`` through a short-lived async client."""
    async with AsyncActionsClient(ClientConfig(target=target, token=token, retry=FAST)) as c:
        return await c.execute(
            workspace_id=str(ws.id),
            scope="agent",
            target_id=agent,
            reason="watch me",
            params=PauseAgent(),
        )


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_watch_replays_then_tails_live(
    client_action_target: str, dev_secrets: Secrets, new_workspace: NewWorkspace, sync: bool
) -> None:
    ws = await new_workspace()
    token = dev_secrets.user_token("bob")
    first = await _pause(client_action_target, token, ws, "eng-code-1")
    watch = Watch(client_action_target, dev_secrets.user_token("carol"), str(ws.id), sync=sync)
    try:
        replayed = await watch.until_completed(first.action_id)
        second = await _pause(client_action_target, token, ws, "eng-code-2")
        live = await watch.until_completed(second.action_id)
    finally:
        await watch.close()
    seqs = [e.seq for e in replayed + live]
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_watch_live_only_skips_the_history(
    client_action_target: str, dev_secrets: Secrets, new_workspace: NewWorkspace, sync: bool
) -> None:
    ws = await new_workspace(agents_per_department=10)
    token = dev_secrets.user_token("bob")
    await _pause(client_action_target, token, ws, "eng-code-1")  # history: seq 1..3
    watch = Watch(
        client_action_target, dev_secrets.user_token("carol"), str(ws.id), sync=sync, live_only=True
    )
    try:
        # The stream opens at the first next() and attaches in the background: pause
        # agents until one of their events comes through, then one more.
        first = asyncio.ensure_future(watch.next())
        for agent in sorted(ws.agents)[1:]:
            await _pause(client_action_target, token, ws, agent)
            if (await asyncio.wait({first}, timeout=1))[0]:
                break
        seen = [first.result()]
        last = await _pause(client_action_target, token, ws, "eng-code-1")
        seen += await watch.until_completed(last.action_id)
    finally:
        await watch.close()
    seqs = [e.seq for e in seen]
    assert seqs[0] > 3  # no history
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # then every event


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_watch_resumes_after_the_server_restarts(
    database_dsn: str,
    client_policy_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    sync: bool,
) -> None:
    ws = await new_workspace()
    token = dev_secrets.user_token("bob")
    async with running_action_server_handle(
        database_dsn, client_policy_target, dev_secrets
    ) as built:
        target = f"127.0.0.1:{built.port}"
        first = await _pause(target, token, ws, "eng-code-1")
        watch = Watch(target, dev_secrets.user_token("carol"), str(ws.id), sync=sync)
        before = await watch.until_completed(first.action_id)
    # The server stopped gracefully (its streams ended); a new one comes up on the same port
    # and the watcher, consumed again, reconnects and resumes after the last seq it saw.
    try:
        async with running_action_server_handle(
            database_dsn, client_policy_target, dev_secrets, listen_addr=target
        ):
            second = await _pause(target, token, ws, "eng-code-2")
            after = await watch.until_completed(second.action_id)
    finally:
        await watch.close()
    seqs = [e.seq for e in before + after]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate across the restart


WATCH_ACTIONS = "/fleetward.actions.v1.ActionService/WatchActions"


def _watch_rpcs(code: str) -> float:
    """The in-process action service's ``fleetward_rpc_requests_total`` sample for
    WatchActions with ``code``."""
    value = prometheus_client.REGISTRY.get_sample_value(
        "fleetward_rpc_requests_total", {"method": WATCH_ACTIONS, "code": code}
    )
    return value or 0.0


async def _cancel(watch: Watch) -> None:
    """End the stream from the client: the async client's pending read is cancelled, the
    sync client's iterator is closed (each cancels its call)."""
    if watch.sync:
        await watch.close()
        return
    pending = asyncio.ensure_future(anext(watch._events))
    await asyncio.sleep(0.2)  # the read is waiting on the server
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    await watch.client.close()


@pytest.mark.parametrize("actions", [1, 2000], ids=["live", "mid-history"])
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_watch_the_client_cancels_is_counted_and_logged_as_cancelled(
    client_action_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
    sync: bool,
    actions: int,
) -> None:
    """A dashboard closing its watch is the stream's usual end: the RPC metric and the
    access log say CANCELLED, never UNKNOWN (an error-rate alert), whether the stream was
    waiting for live events or the server was still sending its history."""
    caplog.set_level(logging.INFO, logger="fleetward.access")
    ws = await new_workspace()
    await append_synthetic_actions(pool, ws.id, actions)
    cancelled, unknown = _watch_rpcs("CANCELLED"), _watch_rpcs("UNKNOWN")
    watch = Watch(client_action_target, dev_secrets.user_token("carol"), str(ws.id), sync=sync)
    # live: the whole history, then the stream waits; mid-history: 6,000 events remain.
    for _ in range(EVENTS_PER_ACTION if actions == 1 else 1):
        await watch.next()
    await _cancel(watch)

    def logged() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if getattr(r, "method", "") == WATCH_ACTIONS
            and getattr(r, "workspace_id", "") == str(ws.id)
        ]

    deadline = time.monotonic() + 10
    while not logged():
        assert time.monotonic() < deadline, "no access-log line for the stream"
        await asyncio.sleep(0.05)
    assert [getattr(r, "code", None) for r in logged()] == ["CANCELLED"]
    assert logged()[0].getMessage() == f"{WATCH_ACTIONS} CANCELLED"
    assert _watch_rpcs("CANCELLED") >= cancelled + 1
    assert _watch_rpcs("UNKNOWN") == unknown
