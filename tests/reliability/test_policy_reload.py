"""A policy file replaced by a broken one mid-load decides nothing (docs/architecture.md §7).

The policy service watches its directory. While bob (an operator) pauses and resumes
agents non-stop, policy.csv is overwritten with broken content (a truncated line, a
half-written file missing bob's binding, a broken model) and, in between, with new good
versions. No request may be denied (bob's grant is in every good version), and every
audit row carries a known good policy_version.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.policy.files import read_policy_dir
from services.policy.server import build_server as build_policy_server
from services.policy.settings import PolicySettings
from tests.conftest import Secrets
from tests.reliability import counters
from tests.reliability.harness import TENANT_LINES, assert_invariants, create_workspace
from tests.reliability.load import Load, compare_with_database
from tests.servers import POLICIES, running_action_server, write_test_policy


@pytest.fixture
async def watched(tmp_path: Path, dev_secrets: Secrets) -> AsyncIterator[tuple[Path, str]]:
    """A policy service that hot-reloads ``tmp_path/policies``; (directory, target)."""
    directory = write_test_policy(tmp_path / "policies", TENANT_LINES)
    settings = PolicySettings(
        listen_addr="127.0.0.1:0",
        policy_dir=directory,
        service_jwt_secret=dev_secrets.service_jwt_secret,
        decision_log="off",
        watch=True,
        reload_debounce_ms=50,
    )
    built = await build_policy_server(settings)
    assert await built.start()
    try:
        yield directory, f"127.0.0.1:{built.port}"
    finally:
        await built.stop(grace=0.5)


async def policy_info(target: str, secrets: Secrets) -> policy_pb2.GetPolicyInfoResponse:
    """GetPolicyInfo as the action service."""
    async with grpc.aio.insecure_channel(target) as channel:
        reply: policy_pb2.GetPolicyInfoResponse = await policy_pb2_grpc.PolicyServiceStub(
            channel
        ).GetPolicyInfo(
            policy_pb2.GetPolicyInfoRequest(),
            metadata=(("authorization", f"Bearer {secrets.service_token()}"),),
            timeout=5,
        )
    return reply


async def settled(
    target: str,
    secrets: Secrets,
    done: Callable[[policy_pb2.GetPolicyInfoResponse], bool],
    limit_s: float = 10,
) -> policy_pb2.GetPolicyInfoResponse:
    """GetPolicyInfo once ``done`` holds for it (the watcher reloaded)."""
    end = time.monotonic() + limit_s
    while True:
        info = await policy_info(target, secrets)
        if done(info):
            return info
        assert time.monotonic() < end, f"the policy service did not reload: {info}"
        await asyncio.sleep(0.05)


def refused(info: policy_pb2.GetPolicyInfoResponse) -> bool:
    """The last reload failed."""
    return bool(info.last_reload_error)


def serving(version: str) -> Callable[[policy_pb2.GetPolicyInfoResponse], bool]:
    """``version`` is the one served."""
    return lambda info: info.policy_version == version


def breakages(good: str) -> list[tuple[str, str]]:
    """(file, content) pairs that must never be served."""
    lines = good.splitlines()
    without_bob = [line for line in lines if not line.startswith("g, bob,")]
    return [
        ("policy.csv", good[: len(good) // 2]),  # cut in the middle of a line
        ("policy.csv", "\n".join(without_bob) + "\np, operator, *, fleet/**\n"),
        ("policy.csv", "\n".join(without_bob) + "\nq, nonsense, line, here, allow, x\n"),
        ("model.conf", "[request_definition]\nr = sub, dom\n"),
        ("policy.csv", "\x00\x01binary garbage\n"),
    ]


async def test_broken_policy_files_mid_load_decide_nothing(
    watched: tuple[Path, str], database_dsn: str, pool: asyncpg.Pool, dev_secrets: Secrets
) -> None:
    await broken_files_under_load(watched, database_dsn, pool, dev_secrets, rounds=1)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_many_broken_policy_files_mid_load_decide_nothing(
    watched: tuple[Path, str], database_dsn: str, pool: asyncpg.Pool, dev_secrets: Secrets
) -> None:
    await broken_files_under_load(watched, database_dsn, pool, dev_secrets, rounds=6)


async def broken_files_under_load(
    watched: tuple[Path, str],
    database_dsn: str,
    pool: asyncpg.Pool,
    dev_secrets: Secrets,
    rounds: int,
) -> None:
    directory, policy_target = watched
    good = (directory / "policy.csv").read_text()
    versions = {read_policy_dir(directory, with_tests=False).version}
    spaces = [await create_workspace(pool, 8) for _ in range(2)]
    agents = [f"{p}-{i}" for p in ("eng-code", "sup-chat") for i in range(1, 9)]
    async with running_action_server(
        database_dsn, policy_target, dev_secrets, policy_timeout_ms=2000
    ) as target:
        load = Load([target], dev_secrets, spaces, agents, retry_share=0.1, deadline_s=5)
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(100_000, concurrency=16, stop=stop))
        for round_, (name, content) in enumerate(breakages(good) * rounds):
            (directory / name).write_text(content)
            counters.record("faults")
            # The broken file is seen (a reload error), and the last good version serves on.
            info = await settled(policy_target, dev_secrets, refused)
            assert info.policy_version in versions
            # A new good version: same grants plus a harmless extra line.
            shutil.copy(POLICIES / "model.conf", directory / "model.conf")
            (directory / "policy.csv").write_text(good + f"g, nobody-{round_}, viewer, *\n")
            version = read_policy_dir(directory, with_tests=False).version
            versions.add(version)
            await settled(policy_target, dev_secrets, serving(version))
            await asyncio.sleep(0.2)
        assert not running.done(), "the load ended before the faults did"
        stop.set()
        outcomes = await running
    problems = await compare_with_database(pool, outcomes)
    assert not problems, "\n".join(problems[:30])
    denied = [o for o in outcomes if "PERMISSION_DENIED" in o.codes]
    assert not denied, f"{len(denied)} requests were denied by a half-loaded policy"
    used = {
        r["policy_version"]
        for r in await pool.fetch(
            "SELECT DISTINCT policy_version FROM action_audit_log WHERE workspace_id = ANY($1)",
            spaces,
        )
    }
    assert used <= versions, used - versions
    assert len(used) > 1, "the good versions in between were never used"
    await assert_invariants(pool, spaces)
