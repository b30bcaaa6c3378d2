"""Load from separate processes: N spawned workers, each with K calls in flight.

Workers connect, wait at a barrier (so slow spawns cannot shorten anyone's window),
warm up for a second, then count the calls that complete in the measuring window and
return their latencies; the parent adds them up. Spawned (not forked) so no gRPC state
crosses a fork.

The parent waits at the same barrier, so it knows the window too: given a ``sample``
function (CPU seconds of the servers, say), it calls it at the window's start and end
and returns the differences, so CPU per call counts exactly the calls of the window.
Each worker also measures its own CPU over the window (the client side).

Kinds: ``echo`` (the bare echo server), ``check``, ``execute`` and ``floor_execute``:
each slot runs :func:`bench.floors.floor_execute_call` (two echo round trips, one plain
enforce, two commits), the worker holding its own asyncpg pool and its own enforcer.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from bench.echo import METHOD

PAYLOAD = b"x" * 160  # about the size of a CheckRequest on the wire

WARMUP_S = 1.0
BARRIER_TIMEOUT_S = 120.0

Call = Callable[[random.Random], Awaitable[Any]]


@dataclass(frozen=True)
class LoadSpec:
    """What one worker sends: ``kind`` (echo, check, execute, floor_execute) to ``target``.

    ``floor_execute`` also needs ``dsn``, ``policy_dir`` (the enforcer's files),
    ``db_connections`` (this worker's pool) and ``first_slot`` (its slots' global numbers,
    which choose the rows they update). ``round_robin``: ``target`` names several
    addresses (``ipv4:a:p1,a:p2``) and calls go to each in turn.
    """

    kind: str
    target: str
    token: str
    items: tuple[tuple[str, ...], ...]  # (workspace, agent) or (subject, ws, action, resource)
    concurrency: int
    duration_s: float
    dsn: str = ""
    policy_dir: str = ""
    db_connections: int = 0
    first_slot: int = 0
    round_robin: bool = False


@dataclass(frozen=True)
class LoadResult:
    """Calls completed in the window, errors, and their latencies in ms.

    ``client_cpu_s``: CPU seconds the load processes used in the window; ``sampled``: the
    window's difference of each value of ``run_load``'s ``sample``.
    """

    completed: int
    errors: int
    latencies_ms: list[float]
    duration_s: float
    client_cpu_s: float = 0.0
    sampled: dict[str, float] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        """Completed calls per second of the window."""
        return self.completed / self.duration_s

    def per_call_ms(self, seconds: float) -> float:
        """``seconds`` (of CPU, say) spent in the window, in ms per completed call."""
        return seconds * 1000 / max(1, self.completed)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the inclusive method; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


def _caller(spec: LoadSpec, channel: grpc.aio.Channel) -> Call:
    metadata = (("authorization", f"Bearer {spec.token}"),)
    if spec.kind == "echo":
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)

        def call_echo(rng: random.Random) -> Awaitable[Any]:
            result: Awaitable[Any] = echo(PAYLOAD)
            return result

        return call_echo
    if spec.kind == "execute":
        stub: Any = actions_pb2_grpc.ActionServiceStub(channel)

        def execute(rng: random.Random) -> Awaitable[Any]:
            workspace, agent = rng.choice(spec.items)
            request = actions_pb2.ExecuteRequest(
                workspace_id=workspace,
                scope=actions_pb2.SCOPE_AGENT,
                target_id=agent,
                reason="bench load",
                request_id=uuid.uuid4().hex,
                pause_agent=actions_pb2.PauseAgentParams(duration_minutes=30),
            )
            result: Awaitable[Any] = stub.Execute(request, metadata=metadata, timeout=10)
            return result

        return execute
    stub = policy_pb2_grpc.PolicyServiceStub(channel)

    def check(rng: random.Random) -> Awaitable[Any]:
        subject, workspace, action, resource = rng.choice(spec.items)
        request = policy_pb2.CheckRequest(
            subject=subject, workspace_id=workspace, action=action, resource=resource
        )
        result: Awaitable[Any] = stub.Check(request, metadata=metadata, timeout=10)
        return result

    return check


async def _keep_session(conn: Any) -> None:
    """The floor pool's reset on release: none (as the action service's pool), unless the
    connection comes back inside a transaction."""
    if conn.is_in_transaction():
        await conn.reset()


async def _floor_callers(
    spec: LoadSpec, channel: grpc.aio.Channel, stack: contextlib.AsyncExitStack
) -> list[Call]:
    """One ``floor_execute`` caller per slot: this worker's pool and enforcer, the slot's
    own rows."""
    from bench import floors  # floors imports this module

    enforcer = floors.plain_enforcer(Path(spec.policy_dir))
    enforcer.enforce(*floors.casbin_order(spec.items[0]))  # builds pycasbin's role caches
    size = max(1, spec.db_connections)
    pool = await asyncpg.create_pool(spec.dsn, min_size=size, max_size=size, reset=_keep_session)
    stack.push_async_callback(pool.close)
    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)

    def slot(rows: tuple[int, int]) -> Call:
        def call(rng: random.Random) -> Awaitable[None]:
            return floors.floor_execute_call(
                echo, enforcer, rng.choice(spec.items), pool.acquire, rows
            )

        return call

    first = spec.first_slot
    return [slot(floors.slot_rows(first + i)) for i in range(spec.concurrency)]


def _channel(spec: LoadSpec) -> grpc.aio.Channel:
    if spec.round_robin:
        return grpc.aio.insecure_channel(
            spec.target, options=[("grpc.lb_policy_name", "round_robin")]
        )
    return grpc.aio.insecure_channel(spec.target)


async def _worker_async(spec: LoadSpec, seed: int, barrier: Any) -> LoadResult:
    rng = random.Random(seed)
    latencies: list[float] = []
    counts = {"errors": 0}
    cpu: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        channel = await stack.enter_async_context(_channel(spec))
        await channel.channel_ready()
        if spec.kind == "floor_execute":
            calls = await _floor_callers(spec, channel, stack)
        else:
            calls = [_caller(spec, channel)] * spec.concurrency
        barrier.wait(BARRIER_TIMEOUT_S)  # every worker is connected: start together
        window_start = time.time() + WARMUP_S
        window_end = window_start + spec.duration_s

        async def loop(call: Call) -> None:
            while time.time() < window_end:
                begun = time.perf_counter()
                try:
                    await call(rng)
                except grpc.aio.AioRpcError:
                    counts["errors"] += 1
                    continue
                done = time.time()
                if window_start <= done <= window_end:
                    latencies.append((time.perf_counter() - begun) * 1000)

        async def clock() -> None:
            for moment in (window_start, window_end):
                await asyncio.sleep(max(0.0, moment - time.time()))
                cpu.append(time.process_time())

        await asyncio.gather(clock(), *(loop(call) for call in calls))
    return LoadResult(len(latencies), counts["errors"], latencies, spec.duration_s, cpu[1] - cpu[0])


def _worker(spec: LoadSpec, seed: int, barrier: Any) -> LoadResult:
    return asyncio.run(_worker_async(spec, seed, barrier))


def _sample_window(
    barrier: Any, duration_s: float, sample: Callable[[], Mapping[str, float]]
) -> dict[str, float]:
    """Wait at the workers' barrier, then ``sample()`` at the window's start and end."""
    barrier.wait(BARRIER_TIMEOUT_S)
    window_start = time.time() + WARMUP_S
    time.sleep(max(0.0, window_start - time.time()))
    before = dict(sample())
    time.sleep(max(0.0, window_start + duration_s - time.time()))
    after = sample()
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def run_load(
    kind: str,
    target: str,
    token: str,
    items: Sequence[tuple[str, ...]],
    *,
    in_flight: int,
    processes: int,
    duration_s: float,
    sample: Callable[[], Mapping[str, float]] | None = None,
    dsn: str = "",
    policy_dir: Path | None = None,
    db_connections: int = 0,
    round_robin: bool = False,
) -> LoadResult:
    """``in_flight`` calls spread over ``processes`` spawned workers for ``duration_s``.

    Args:
        kind: ``echo``, ``check``, ``execute`` or ``floor_execute``.
        target: The server (``host:port``), or several (``ipv4:h:p1,h:p2``) with
            ``round_robin``.
        token: The bearer token of ``check`` and ``execute`` calls.
        items: What the calls draw from: (workspace, agent) for ``execute``, check items
            (subject, workspace, action, resource) for ``check`` and ``floor_execute``.
        in_flight: Calls in flight in all, spread over the workers.
        processes: How many worker processes.
        duration_s: The measuring window (after a warm-up of ``WARMUP_S``).
        sample: Called at the window's start and end; the result's ``sampled`` holds the
            differences (say, CPU seconds of the servers).
        dsn: ``floor_execute``: the database of the floor's tables.
        policy_dir: ``floor_execute``: the policy files of each worker's plain enforcer.
        db_connections: ``floor_execute``: database connections in all, spread over the
            workers (each worker has its own pool).
        round_robin: Each worker's channel sends its calls to the addresses of ``target``
            in turn (grpc's ``round_robin`` load-balancing policy).
    """

    def spread(total: int) -> list[int]:
        return [total // processes + (1 if i < total % processes else 0) for i in range(processes)]

    per_worker = spread(in_flight)
    connections = spread(db_connections)
    specs = [
        LoadSpec(
            kind,
            target,
            token,
            tuple(items),
            k,
            duration_s,
            dsn=dsn,
            policy_dir=str(policy_dir or ""),
            db_connections=connections[i],
            first_slot=sum(per_worker[:i]),
            round_robin=round_robin,
        )
        for i, k in enumerate(per_worker)
    ]
    context = multiprocessing.get_context("spawn")
    sampled: dict[str, float] = {}
    with context.Manager() as manager, context.Pool(processes) as pool:
        barrier = manager.Barrier(processes + (1 if sample else 0))
        pending = pool.starmap_async(_worker, [(spec, i, barrier) for i, spec in enumerate(specs)])
        if sample is not None:
            try:
                sampled = _sample_window(barrier, duration_s, sample)
            except threading.BrokenBarrierError:
                pending.get()  # a worker failed before the barrier: raise its error
                raise
        results = pending.get()
    latencies = [v for r in results for v in r.latencies_ms]
    return LoadResult(
        sum(r.completed for r in results),
        sum(r.errors for r in results),
        latencies,
        duration_s,
        sum(r.client_cpu_s for r in results),
        sampled,
    )
