"""The floors (docs/architecture.md §11): what any implementation of the design must pay.

- ``floor_echo``: one bare grpc.aio round trip to a separate process;
- ``floor_enforce``: one in-process plain pycasbin ``enforce``;
- ``floor_execute``: two echo round trips (caller→action, action→policy) + one enforce +
  two asyncpg commits (insert a row; update two rows in one transaction).

:func:`floor_execute_call` is that program once; the sequential floor
(:func:`execute_floor_ms`) and the load generator's ``floor_execute`` kind
(``bench/load.py``, 64 in flight) both run it, so a call under load does exactly the
work of a sequential one.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
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
CREATE TABLE IF NOT EXISTS bench_floor_rows (id int PRIMARY KEY, v bigint NOT NULL)"""
_FLOOR_ROWS = """
INSERT INTO bench_floor_rows SELECT g, 0 FROM generate_series(1, $1::int) g
ON CONFLICT DO NOTHING"""
_INSERT = "INSERT INTO bench_floor_log (payload) VALUES ($1)"
_UPDATE = "UPDATE bench_floor_rows SET v = v + 1 WHERE id = ANY($1)"
_PENDING = '{"status": "pending"}'
SEQUENTIAL_ROWS = (1, 2)

EchoCall = Callable[[bytes], Awaitable[bytes]]
# An async context manager yielding a connection: a pool's ``acquire`` or one connection.
Acquire = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


def plain_enforcer(policy_dir: Path) -> Any:
    """A plain pycasbin enforcer from the files, with the service's ``*`` domain matching."""
    enforcer = casbin.Enforcer(str(policy_dir / "model.conf"), str(policy_dir / "policy.csv"))
    enforcer.add_named_domain_matching_func("g", workspace_matches)
    return enforcer


def enforce_p50_ms(enforcer: Any, items: Sequence[tuple[str, ...]], calls: int) -> float:
    """p50 of ``enforce(sub, dom, obj, act)`` over random items (first call excluded)."""
    rng = random.Random(1)
    enforcer.enforce(*casbin_order(items[0]))  # builds pycasbin's role caches
    times = []
    for _ in range(calls):
        request = casbin_order(rng.choice(items))
        begun = time.perf_counter()
        enforcer.enforce(*request)
        times.append((time.perf_counter() - begun) * 1000)
    return percentile(times, 50)


def casbin_order(item: Sequence[str]) -> tuple[str, str, str, str]:
    """A check item (subject, workspace, action, resource) in the model's request order."""
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


def slot_rows(slot: int) -> tuple[int, int]:
    """The two ``bench_floor_rows`` a load slot (0, 1, …) updates: its own pair.

    Each in-flight slot updates rows no other slot touches, as Executes spread over 16
    workspaces of 64 agents mostly do; 64 slots on one pair would measure a row-lock queue.
    """
    return 2 * slot + 3, 2 * slot + 4


async def prepare_floor_tables(conn: Any, slots: int) -> None:
    """Create the floor's tables and the rows of the sequential floor and ``slots`` slots.

    Args:
        conn: An asyncpg connection to the bench's database.
        slots: How many load slots will update their own pair (:func:`slot_rows`).
    """
    await conn.execute(_FLOOR_TABLES)
    await conn.execute(_FLOOR_ROWS, slot_rows(slots)[1])


async def floor_execute_call(
    echo: EchoCall,
    enforcer: Any,
    request: tuple[str, ...],
    acquire: Acquire,
    rows: Sequence[int],
) -> None:
    """One floor_execute: echo, echo, enforce, INSERT commit, 2-row UPDATE commit.

    Args:
        echo: The echo method of a channel to ``bench.echo`` (both round trips use it).
        enforcer: A plain pycasbin enforcer (:func:`plain_enforcer`).
        request: A check item (subject, workspace, action, resource).
        acquire: Yields the connection for the two commits (one connection, or a pool's
            ``acquire``); statements are prepared once per connection (asyncpg's cache).
        rows: The two ``bench_floor_rows`` ids to update.
    """
    await echo(PAYLOAD)
    await echo(PAYLOAD)
    enforcer.enforce(*casbin_order(request))
    async with acquire() as conn:
        await conn.fetch(_INSERT, _PENDING)
        async with conn.transaction():
            await conn.fetch(_UPDATE, list(rows))


async def execute_floor_ms(
    echo_target: str,
    dsn: str,
    enforcer: Any,
    items: Sequence[tuple[str, ...]],
    calls: int,
    slots: int = 64,
) -> list[float]:
    """Sequential floor_execute (:func:`floor_execute_call`) on one connection.

    Creates the floor's tables, with rows for ``slots`` load slots (the ``floor_execute``
    load that follows).
    """
    rng = random.Random(2)
    conn = await asyncpg.connect(dsn)
    try:
        await prepare_floor_tables(conn, slots)

        def acquire() -> contextlib.AbstractAsyncContextManager[Any]:
            return contextlib.nullcontext(conn)

        async with grpc.aio.insecure_channel(echo_target) as channel:
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
            times = []
            for i in range(calls + 20):
                begun = time.perf_counter()
                await floor_execute_call(
                    echo, enforcer, rng.choice(items), acquire, SEQUENTIAL_ROWS
                )
                if i >= 20:
                    times.append((time.perf_counter() - begun) * 1000)
    finally:
        await conn.close()
    return times
