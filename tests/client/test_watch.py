"""watch_actions against the real action service: replay, live tail, resume across a restart."""

from __future__ import annotations

import asyncio
from typing import Any

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
