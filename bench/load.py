"""Load from separate processes: N spawned workers, each with K calls in flight.

Workers connect, wait at a barrier (so slow spawns cannot shorten anyone's window),
warm up for a second, then count the calls that complete in the measuring window and
return their latencies; the parent adds them up. Spawned (not forked) so no gRPC state
crosses a fork.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from bench.echo import METHOD

PAYLOAD = b"x" * 160  # about the size of a CheckRequest on the wire

WARMUP_S = 1.0


@dataclass(frozen=True)
class LoadSpec:
    """What one worker sends: ``kind`` execute or check, to ``target`` with ``token``."""

    kind: str
    target: str
    token: str
    items: tuple[tuple[str, ...], ...]  # (workspace, agent) or (subject, ws, action, resource)
    concurrency: int
    duration_s: float


@dataclass(frozen=True)
class LoadResult:
    """Calls completed in the window, errors, and their latencies in ms."""

    completed: int
    errors: int
    latencies_ms: list[float]
    duration_s: float

    @property
    def per_s(self) -> float:
        """Completed calls per second of the window."""
        return self.completed / self.duration_s


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the inclusive method; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


def _caller(spec: LoadSpec, channel: grpc.aio.Channel) -> Callable[[random.Random], Awaitable[Any]]:
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


async def _worker_async(spec: LoadSpec, seed: int, barrier: Any) -> LoadResult:
    rng = random.Random(seed)
    latencies: list[float] = []
    counts = {"errors": 0}
    async with grpc.aio.insecure_channel(spec.target) as channel:
        await channel.channel_ready()
        call = _caller(spec, channel)
        barrier.wait()  # every worker is connected: start together
        window_start = time.time() + WARMUP_S
        window_end = window_start + spec.duration_s

        async def loop() -> None:
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

        await asyncio.gather(*(loop() for _ in range(spec.concurrency)))
    return LoadResult(len(latencies), counts["errors"], latencies, spec.duration_s)


def _worker(spec: LoadSpec, seed: int, barrier: Any) -> LoadResult:
    return asyncio.run(_worker_async(spec, seed, barrier))


def run_load(
    kind: str,
    target: str,
    token: str,
    items: Sequence[tuple[str, ...]],
    *,
    in_flight: int,
    processes: int,
    duration_s: float,
) -> LoadResult:
    """``in_flight`` calls spread over ``processes`` spawned workers for ``duration_s``."""
    per_worker = [
        in_flight // processes + (1 if i < in_flight % processes else 0) for i in range(processes)
    ]
    specs = [LoadSpec(kind, target, token, tuple(items), k, duration_s) for k in per_worker]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        barrier = manager.Barrier(processes)
        results = pool.starmap(_worker, [(spec, i, barrier) for i, spec in enumerate(specs)])
    latencies = [v for r in results for v in r.latencies_ms]
    return LoadResult(
        sum(r.completed for r in results),
        sum(r.errors for r in results),
        latencies,
        duration_s,
    )
