"""The floors (docs/architecture.md §11): what any implementation of the design must pay.

- ``floor_echo``: one bare grpc.aio round trip to a separate process;
- ``floor_enforce``: one in-process plain pycasbin ``enforce``;
- ``floor_execute``: two echo round trips (caller→action, action→policy) + one enforce +
  two asyncpg commits (insert a row; update two rows in one transaction).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import casbin
import grpc

from bench.echo import METHOD
from bench.load import PAYLOAD, percentile
from services.policy.enforcer import workspace_matches

_FLOOR_TABLES = """
CREATE TABLE IF NOT EXISTS bench_floor_log (
    id bigserial PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS bench_floor_rows (id int PRIMARY KEY, v bigint NOT NULL);
INSERT INTO bench_floor_rows VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING"""


def plain_enforcer(policy_dir: Path) -> Any:
    """A plain pycasbin enforcer from the files, with the service's ``*`` domain matching."""
    enforcer = casbin.Enforcer(str(policy_dir / "model.conf"), str(policy_dir / "policy.csv"))
    enforcer.add_named_domain_matching_func("g", workspace_matches)
    return enforcer


def enforce_p50_ms(enforcer: Any, items: Sequence[tuple[str, ...]], calls: int) -> float:
    """p50 of ``enforce(sub, dom, obj, act)`` over random items (first call excluded)."""
    rng = random.Random(1)
    enforcer.enforce(*_casbin_order(items[0]))  # builds pycasbin's role caches
    times = []
    for _ in range(calls):
        request = _casbin_order(rng.choice(items))
        begun = time.perf_counter()
        enforcer.enforce(*request)
        times.append((time.perf_counter() - begun) * 1000)
    return percentile(times, 50)


def _casbin_order(item: Sequence[str]) -> tuple[str, str, str, str]:
    subject, workspace, action, resource = item
    return subject, workspace, resource, action


async def echo_latencies_ms(target: str, calls: int) -> list[float]:
    """Sequential bare echo round trips."""
    async with grpc.aio.insecure_channel(target) as channel:
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        for _ in range(50):
            await echo(PAYLOAD)
        times = []
        for _ in range(calls):
            begun = time.perf_counter()
            await echo(PAYLOAD)
            times.append((time.perf_counter() - begun) * 1000)
    return times


async def execute_floor_ms(
    echo_target: str, dsn: str, enforcer: Any, items: Sequence[tuple[str, ...]], calls: int
) -> list[float]:
    """Sequential floor_execute: echo, echo, enforce, INSERT commit, 2-row UPDATE commit."""
    rng = random.Random(2)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_FLOOR_TABLES)
        insert = await conn.prepare("INSERT INTO bench_floor_log (payload) VALUES ($1)")
        update = await conn.prepare("UPDATE bench_floor_rows SET v = v + 1 WHERE id = ANY($1)")
        async with grpc.aio.insecure_channel(echo_target) as channel:
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
            times = []
            for i in range(calls + 20):
                begun = time.perf_counter()
                await echo(PAYLOAD)
                await echo(PAYLOAD)
                enforcer.enforce(*_casbin_order(rng.choice(items)))
                await insert.fetch('{"status": "pending"}')
                async with conn.transaction():
                    await update.fetch([1, 2])
                if i >= 20:
                    times.append((time.perf_counter() - begun) * 1000)
    finally:
        await conn.close()
    return times
