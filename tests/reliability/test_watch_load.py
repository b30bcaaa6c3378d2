"""2,000 idle watch streams of one reader do not slow the service down: Execute's p50
stays within 1.5x of its value without them, and stream number 2,001 is refused.

Idle means watching a workspace where nothing happens, while the event listener wakes
every stream's workspace twice a second (instead of every 5 s) so that idle streams cost
what they cost: one shared read per workspace per wake-up, not one per stream. A ratio
measured within one run on one machine, like the bench's: slow-marked, in
``make test-reliability`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from tests.actions.helpers import Api, details
from tests.conftest import Secrets
from tests.reliability import counters
from tests.reliability.harness import create_workspace
from tests.servers import running_action_server_handle

STREAMS = 2000
CONNECTIONS = 4


async def _execute_p50_ms(api: Api, ws: uuid.UUID, rounds: int) -> float:
    times = []
    for i in range(rounds):
        action = "pause_agent" if i % 2 == 0 else "resume_agent"
        begun = time.perf_counter()
        await api.execute("bob", ws, action, target="eng-code-1")
        times.append((time.perf_counter() - begun) * 1000)
    return statistics.median(times[10:])


async def _until(condition: Any, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)  # polling the server's own counter


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_two_thousand_idle_streams_leave_execute_within_1_5x(
    database_dsn: str, rel_policy_target: str, dev_secrets: Secrets, pool: asyncpg.Pool
) -> None:
    watched, acted = await create_workspace(pool), await create_workspace(pool)
    async with contextlib.AsyncExitStack() as stack:
        built = await stack.enter_async_context(
            running_action_server_handle(
                database_dsn,
                rel_policy_target,
                dev_secrets,
                policy_timeout_ms=5000,
                watch_max_streams=STREAMS,
                watch_max_streams_per_subject=STREAMS,
                watch_poll_interval_s=0.5,
            )
        )
        target = f"127.0.0.1:{built.port}"
        # A local subchannel pool each: channels to one target otherwise share one HTTP/2
        # connection (whose streams the server caps at 1,000: grpc.max_concurrent_streams).
        own = [("grpc.use_local_subchannel_pool", 1)]
        channels = [
            await stack.enter_async_context(grpc.aio.insecure_channel(target, options=own))
            for _ in range(CONNECTIONS + 1)
        ]
        api = Api(channels[-1], dev_secrets)
        without = await _execute_p50_ms(api, acted, 150)

        watchers = [Api(c, dev_secrets) for c in channels[:CONNECTIONS]]
        request = actions_pb2.WatchActionsRequest(workspace_id=str(watched))
        # Opened in steps of 100, as clients reconnecting with backoff would: a burst of
        # thousands at once finds gRPC shedding calls it has not handed to the server yet
        # (CANCELLED), which the client library retries.
        calls: list[Any] = []
        for step in range(0, STREAMS, 100):
            for i in range(step, step + 100):
                watcher = watchers[i % CONNECTIONS]
                calls.append(watcher.stub.WatchActions(request, metadata=watcher.auth("carol")))
            await _until(lambda n=step + 100: built.watcher.open_streams >= n)
        assert built.watcher.open_streams == STREAMS
        assert built.watcher.feeds == 1
        counters.record("watch_streams", STREAMS)

        one_more = watchers[0].stub.WatchActions(request, metadata=watchers[0].auth("carol"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(one_more.read(), 10)
        refused = details(err.value)
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_STREAMS",
        )

        with_streams = await _execute_p50_ms(api, acted, 150)
        print(
            f"Execute p50: {without:.2f} ms without, {with_streams:.2f} ms with {STREAMS} "
            f"idle streams ({with_streams / without:.2f}x)"
        )
        assert with_streams <= 1.5 * without
        for call in calls:
            call.cancel()
