"""``python -m bench.breakdown``: where one sequential Execute spends its time.

Runs both services in this process (so their awaits can be timed), wraps asyncpg's
statement methods (BEGIN and COMMIT included) and the policy client's ``check``, sends
sequential ``Execute(pause_agent)`` calls and prints the mean milliseconds per Execute
of each statement and call. In-process, so the client shares the event loop: the total
is a little higher than ``make bench``'s separate-process figure, the split is the point.
Needs DATABASE_URL (a scratch database is created and dropped).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench import policygen, procs, scenarios, seed
from services.actions import policy_gateway
from services.actions.server import build_server as build_action_server
from services.actions.settings import ActionSettings
from services.common.tokens import mint_user_token
from services.policy.server import build_server as build_policy_server
from services.policy.settings import PolicySettings

SPENT: dict[str, float] = collections.defaultdict(float)
COUNT: collections.Counter[str] = collections.Counter()


def _timed(label: Callable[..., str], method: Callable[..., Awaitable[Any]]) -> Any:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            key = label(*args)
            SPENT[key] += time.perf_counter() - begun
            COUNT[key] += 1

    return wrapper


def _instrument() -> None:
    def statement(_conn: Any, query: Any, *_: Any) -> str:
        # Statements with a literal (COMMIT and the unlock of one action) under one label.
        return re.sub(r"-?\d{6,}", "N", " ".join(str(query).split()))[:72]

    for name in ("fetchrow", "fetch", "execute", "fetchval"):
        method = getattr(asyncpg.Connection, name)
        setattr(asyncpg.Connection, name, _timed(statement, method))
    check = policy_gateway.PolicyGateway.check
    setattr(policy_gateway.PolicyGateway, "check", _timed(lambda *_: "[policy Check]", check))  # noqa: B010


async def run(calls: int) -> None:
    """Measure and print the breakdown."""
    _instrument()
    jwt_secret, service_secret = secrets.token_hex(32), secrets.token_hex(32)
    work = Path(tempfile.mkdtemp(prefix="fleetward-breakdown-"))
    policy = policygen.generate(rules=50, links=60, seed=11)
    policy = dataclasses.replace(policy, lines=(*policy.lines, "g, bench-user, admin, *"))
    policy_dir = policygen.write_policy_dir(work / "policy", policy)
    async with procs.scratch_database(os.environ["DATABASE_URL"]) as dsn:
        workspace = seed.workspace_ids(1, tag=3)[0]
        conn = await asyncpg.connect(dsn)
        try:
            await seed.seed_agents(conn, [workspace], 64, 4)
        finally:
            await conn.close()
        policy_server = await build_policy_server(
            PolicySettings(
                listen_addr="127.0.0.1:0",
                policy_dir=policy_dir,
                service_jwt_secret=service_secret,
                decision_log="off",
                watch=False,
            )
        )
        await policy_server.start()
        action_server = await build_action_server(
            ActionSettings(
                database_url=dsn,
                listen_addr="127.0.0.1:0",
                policy_target=f"127.0.0.1:{policy_server.port}",
                jwt_secret=jwt_secret,
                service_jwt_secret=service_secret,
            )
        )
        await action_server.start()
        try:
            target = f"127.0.0.1:{action_server.port}"
            token = mint_user_token(jwt_secret, "bench-user")
            await scenarios.execute_latencies_ms(target, token, workspace, 64, 50)
            SPENT.clear()
            COUNT.clear()
            times = await scenarios.execute_latencies_ms(target, token, workspace, 64, calls)
        finally:
            await action_server.stop(0.5)
            await policy_server.stop(0.5)
    executed = calls + 20  # execute_latencies_ms warms up with 20 untimed calls
    print(f"Execute p50 {statistics.median(times):.2f} ms (in-process), per Execute:")
    accounted = 0.0
    for key, spent in sorted(SPENT.items(), key=lambda kv: -kv[1]):
        per = spent / executed * 1000
        accounted += per
        print(f"  {per:6.3f} ms  x{COUNT[key] / executed:3.1f}  {key}")
    rest = statistics.mean(times) - accounted
    print(f"  {rest:6.3f} ms        the rest: gRPC both ways, auth, Python in both services")


if __name__ == "__main__":
    if not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL is unset (make bench sets it; or run under services.dev with-db)")
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
