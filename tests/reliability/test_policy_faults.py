"""The policy service stalled (SIGSTOP) or killed (SIGKILL) under the action service
(docs/architecture.md §4, §5.9).

Execute must answer UNAVAILABLE ``POLICY_UNAVAILABLE`` within its deadline, execute
nothing and leave nothing pending; once the policy service is back, Execute works again
without restarting the action service.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from tests.actions.helpers import Api, details
from tests.conftest import Secrets
from tests.events.processes import ServiceProcess, policy_env, policy_process
from tests.reliability import counters
from tests.reliability.harness import LOG_FILES, assert_invariants, create_workspace, writes
from tests.reliability.load import Load, compare_with_database
from tests.servers import running_action_server

C = grpc.StatusCode
SLACK_S = 2.0


@pytest.fixture
async def policy_proc(
    tmp_path: Path, rel_policy_dir: Path, dev_secrets: Secrets
) -> AsyncIterator[ServiceProcess]:
    """The policy service as a process we can stop, kill and restart."""
    proc = policy_process(tmp_path)
    LOG_FILES.append(proc.log)
    await proc.start(policy_env(proc, rel_policy_dir, dev_secrets))
    yield proc
    if proc.proc is not None and proc.proc.returncode is None:
        proc.signal(signal.SIGCONT)
    await proc.stop()


@pytest.fixture
async def api(
    policy_proc: ServiceProcess, database_dsn: str, dev_secrets: Secrets
) -> AsyncIterator[Api]:
    """An in-process action service using that policy process (policy budget 1 s)."""
    async with (
        running_action_server(
            database_dsn, policy_proc.target, dev_secrets, policy_timeout_ms=1000
        ) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        yield Api(channel, dev_secrets)


async def unavailable_within_deadline(api: Api, ws: uuid.UUID, deadline: float) -> None:
    """Execute fails UNAVAILABLE (or at worst DEADLINE_EXCEEDED) within deadline + slack."""
    start = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.execute("bob", ws, "pause_agent", target="eng-code-1", deadline=deadline)
    elapsed = time.monotonic() - start
    counters.record("requests")
    assert elapsed <= deadline + SLACK_S, elapsed
    info = details(caught.value)
    if info.code == C.UNAVAILABLE:
        assert info.reason == "POLICY_UNAVAILABLE"
    else:
        assert info.code == C.DEADLINE_EXCEEDED, info


async def works_again(api: Api, ws: uuid.UUID, limit_s: float = 20) -> None:
    """Execute succeeds again (the channel reconnects by itself)."""
    end = time.monotonic() + limit_s
    while True:
        try:
            await api.execute("bob", ws, "pause_agent", target="sup-chat-1", deadline=3)
            return
        except grpc.aio.AioRpcError as exc:
            if exc.code() != C.UNAVAILABLE or time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)


async def test_a_stalled_policy_service_is_unavailable_in_time_and_nothing_runs(
    api: Api, policy_proc: ServiceProcess, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    await api.execute("bob", ws, "pause_agent", target="eng-code-2")
    before = await writes(pool, [ws])
    policy_proc.signal(signal.SIGSTOP)
    counters.record("faults")
    try:
        await asyncio.gather(*(unavailable_within_deadline(api, ws, 3) for _ in range(16)))
        await unavailable_within_deadline(api, ws, 0.5)
        assert await writes(pool, [ws]) == before
    finally:
        policy_proc.signal(signal.SIGCONT)
    await works_again(api, ws)
    await assert_invariants(pool, [ws])


async def test_a_killed_policy_service_is_unavailable_in_time_and_comes_back(
    api: Api,
    policy_proc: ServiceProcess,
    pool: asyncpg.Pool,
    rel_policy_dir: Path,
    dev_secrets: Secrets,
) -> None:
    ws = await create_workspace(pool)
    policy_proc.signal(signal.SIGKILL)
    await policy_proc.wait()
    counters.record("faults")
    before = await writes(pool, [ws])
    await asyncio.gather(*(unavailable_within_deadline(api, ws, 3) for _ in range(8)))
    assert await writes(pool, [ws]) == before
    await policy_proc.start(policy_env(policy_proc, rel_policy_dir, dev_secrets))
    await works_again(api, ws)
    await assert_invariants(pool, [ws])


async def test_a_policy_budget_longer_than_the_deadline_still_answers_within_the_deadline(
    policy_proc: ServiceProcess, database_dsn: str, pool: asyncpg.Pool, dev_secrets: Secrets
) -> None:
    ws = await create_workspace(pool)
    async with (
        running_action_server(
            database_dsn, policy_proc.target, dev_secrets, policy_timeout_ms=30_000
        ) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        api = Api(channel, dev_secrets)
        before = await writes(pool, [ws])
        policy_proc.signal(signal.SIGSTOP)
        counters.record("faults")
        try:
            await asyncio.gather(*(unavailable_within_deadline(api, ws, 1.0) for _ in range(4)))
        finally:
            policy_proc.signal(signal.SIGCONT)
        # No late write is the point, and an absence gives no event to wait on (a handler's
        # shielded work may outlive the call): a bounded wait, then anything still running
        # server-side would show.
        await asyncio.sleep(0.5)
        assert await writes(pool, [ws]) == before
        await works_again(api, ws)
    await assert_invariants(pool, [ws])


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_policy_stalls_and_kills_under_load_lose_and_double_nothing(
    policy_proc: ServiceProcess,
    database_dsn: str,
    pool: asyncpg.Pool,
    rel_policy_dir: Path,
    dev_secrets: Secrets,
) -> None:
    spaces = [await create_workspace(pool, 8) for _ in range(3)]
    agents = [f"{p}-{i}" for p in ("eng-code", "sup-chat") for i in range(1, 9)]
    async with running_action_server(
        database_dsn, policy_proc.target, dev_secrets, policy_timeout_ms=1000
    ) as target:
        load = Load([target], dev_secrets, spaces, agents, deadline_s=3, max_attempts=200)
        running = asyncio.create_task(load.run(3000, concurrency=32))
        for round_ in range(6):
            await asyncio.sleep(1.0)
            if round_ % 3 == 2:
                policy_proc.signal(signal.SIGKILL)
                await policy_proc.wait()
                await asyncio.sleep(0.5)
                await policy_proc.start(policy_env(policy_proc, rel_policy_dir, dev_secrets))
            else:
                policy_proc.signal(signal.SIGSTOP)
                await asyncio.sleep(0.7)
                policy_proc.signal(signal.SIGCONT)
            counters.record("faults")
        outcomes = await running
    problems = await compare_with_database(pool, outcomes)
    assert not problems, "\n".join(problems[:30])
    assert sum(o.final == "OK" for o in outcomes) > 1000
    await assert_invariants(pool, spaces)
