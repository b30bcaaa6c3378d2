"""The replay budget: history read from the table is paced for the whole process, in
turns, and one subject replays only so many streams at once.

Ten streams replaying from seq 0 took the event loop from every other call (Execute
p50 9 -> 42 ms in the attack; 14 ms with the budget). The pacing is checked with the
budget given a clock of the test's own (no timing assertions); the streams end to end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from services.actions.events.replay import ReplayBudget
from tests.actions.helpers import Api
from tests.conftest import NewWorkspace, Secrets
from tests.servers import running_action_server_handle


class Clock:
    """time.monotonic and asyncio.sleep for the budget: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_second_of_events_goes_at_once_then_the_rate_holds(clock: Clock) -> None:
    budget = ReplayBudget(
        events_per_s=1000, per_subject=2, clock=clock.monotonic, sleep=clock.sleep
    )
    await budget.spend(1000)  # the burst
    assert clock.slept == []
    await budget.spend(500)
    assert clock.slept == [pytest.approx(0.5)]
    for _ in range(4):
        await budget.spend(250)
    assert sum(clock.slept) == pytest.approx(1.5)  # 2,500 events: 1 s of burst + 1.5 s
    clock.now += 10  # idle: the bucket refills to one second's worth, not more
    await budget.spend(1000)
    await budget.spend(1)
    assert clock.slept[-1] == pytest.approx(0.001)


async def test_a_subject_replays_only_so_many_streams_at_once() -> None:
    budget = ReplayBudget(events_per_s=1000, per_subject=1)
    entered: list[str] = []
    release = asyncio.Event()

    async def replay_as(subject: str, name: str) -> None:
        async with budget.replaying(subject):
            entered.append(name)
            await release.wait()

    tasks = [
        asyncio.ensure_future(replay_as("carol", "carol-1")),
        asyncio.ensure_future(replay_as("carol", "carol-2")),
        asyncio.ensure_future(replay_as("bob", "bob-1")),
    ]
    # Until every task has reached its slot (carol's counts two users): carol-2 then waits
    # for the one permit carol-1 holds until the release, so what entered is final.
    for _ in range(100):
        if "carol" in budget._slots and budget._slots["carol"][1] == 2 and "bob-1" in entered:
            break
        await asyncio.sleep(0)
    assert entered == ["carol-1", "bob-1"]  # carol's second stream waits its turn
    release.set()
    await asyncio.gather(*tasks)
    assert entered == ["carol-1", "bob-1", "carol-2"]
    assert budget._slots == {}  # nothing kept for subjects that left


async def test_every_event_arrives_in_order_under_a_tight_budget(
    database_dsn: str,
    events_policy_target: str,
    dev_secrets: Secrets,
    new_workspace: NewWorkspace,
    pool: asyncpg.Pool,
) -> None:
    ws = await new_workspace()
    server = running_action_server_handle(
        database_dsn,
        events_policy_target,
        dev_secrets,
        watch_replay_rate=5,  # fewer than the history: the second page waits
        watch_replays_per_subject=1,
    )
    async with server as built, grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        api = Api(channel, dev_secrets)
        for n in range(4):
            agent = f"eng-code-{n % 2 + 1}"
            action = "pause_agent" if n < 2 else "resume_agent"
            await api.execute("bob", ws.id, action, target=agent)
        head = await pool.fetchval(
            "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1", ws.id
        )
        request = actions_pb2.WatchActionsRequest(workspace_id=str(ws.id))
        streams: list[Any] = [
            api.stub.WatchActions(request, metadata=api.auth("carol")) for _ in range(2)
        ]

        async def read_all(stream: Any) -> list[int]:
            return [(await stream.read()).seq for _ in range(head)]

        seen = await asyncio.wait_for(asyncio.gather(*(read_all(s) for s in streams)), 30)
        for stream in streams:
            stream.cancel()
    assert seen == [list(range(1, head + 1))] * 2
