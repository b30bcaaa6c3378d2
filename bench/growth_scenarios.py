"""The growth table's measurements that bench/scenarios.py does not have: fleet pauses
from the same state each round, a WatchActions replay read to its end, ``audit verify``
over one workspace, and Check p50 on several policy services at once, interleaved.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc

from bench import policygen, procs, scenarios
from bench.load import percentile
from services.actions.audit.verify import verify
from services.common.tokens import mint_service_token

# A stream reads its history in pages; a page of 500 events is well under this.
_MAX_MESSAGE = 16 * 1024 * 1024


# The database's client backends but the caller's own (the services' pools).
_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()"""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds taken by some processes and by the database's client backends (all
    but the meter's own connection) between :meth:`start` and :meth:`stop`.

    A process that starts in between counts from its start. One that ends in between is
    counted up to the last sample: with ``poll_s``, the meter samples every ``poll_s``
    seconds meanwhile (for the verifier, whose connections and reader process end before
    it returns); without, it is lost (the services' pools keep their connections).
    """

    def __init__(
        self,
        conn: asyncpg.Connection[asyncpg.Record],
        pids: Sequence[int],
        *,
        new_children: bool = False,
        poll_s: float | None = None,
    ) -> None:
        """Measure ``pids`` and the backends of ``conn``'s database.

        Args:
            conn: The meter's own connection (not measured).
            pids: Processes to measure.
            new_children: Also this process's children started after :meth:`start`.
            poll_s: Sample this often between start and stop (None: only at both ends).
        """
        self._conn = conn
        self._pids = list(pids)
        self._new_children = new_children
        self._old_children: set[int] = set()
        self._poll_s = poll_s
        self._before: dict[int, float] = {}
        self._seen: dict[int, float] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _now(self) -> dict[int, float]:
        pids = [*self._pids, *(r["pid"] for r in await self._conn.fetch(_BACKENDS))]
        if self._new_children:
            children = psutil.Process().children(recursive=True)
            pids += [c.pid for c in children if c.pid not in self._old_children]
        return {pid: cpu for pid in pids if (cpu := _cpu_s(pid)) > 0}

    async def _poll(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            self._seen.update(await self._now())

    async def start(self) -> None:
        """Take the starting point."""
        self._old_children = {c.pid for c in psutil.Process().children(recursive=True)}
        self._before = await self._now()
        self._seen = dict(self._before)
        if self._poll_s is not None:
            self._poller = asyncio.create_task(self._poll(self._poll_s))

    async def stop(self) -> float:
        """CPU seconds since :meth:`start`."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        self._seen.update(await self._now())
        return sum(cpu - self._before.get(pid, 0.0) for pid, cpu in self._seen.items())


@dataclass(frozen=True)
class Pause:
    """One fleet pause: its wall time, and the CPU it took (all processes together)."""

    seconds: float
    cpu_s: float  # action service + policy service + the action service's PostgreSQL backends


async def fleet_pauses(
    target: str, token: str, dsn: str, workspace: uuid.UUID, rounds: int, pids: Sequence[int]
) -> list[Pause]:
    """Fleet-scope pauses of every agent of ``workspace``, ``rounds`` times.

    Each pause is resumed (not timed), then ``agents`` is vacuumed (not timed): a pause
    and a resume each rewrite every agent's row, so without it each round would start
    from twice as many dead rows as the last, at whatever point autovacuum had reached.
    Besides the wall time, each pause's CPU time is taken from the services (``pids``)
    and from the database's backends that serve them: on a machine shared with other
    work, the wall time also counts the waits for a core, the CPU time much less so.

    Args:
        target: The action service's address.
        token: A user token allowed to pause and resume the whole fleet.
        dsn: The scratch database (for the VACUUM and the list of backends).
        workspace: The workspace whose agents are paused.
        rounds: How many pauses.
        pids: The action and policy services' processes.

    Returns:
        Each pause, from the call to its answer.

    Raises:
        RuntimeError: A pause changed no agent.
    """
    pauses = []
    conn = await asyncpg.connect(dsn)
    meter = CpuMeter(conn, pids)
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = actions_pb2_grpc.ActionServiceStub(channel)
        try:
            for _ in range(rounds):
                request = scenarios.pause_request(workspace, actions_pb2.SCOPE_FLEET, "")
                await meter.start()
                begun = time.perf_counter()
                action = await stub.Execute(request, metadata=scenarios.bearer(token), timeout=600)
                seconds = time.perf_counter() - begun
                pauses.append(Pause(seconds, await meter.stop()))
                if action.result["count"] == 0:
                    raise RuntimeError("the fleet pause touched no agent")
                resume = actions_pb2.ExecuteRequest(
                    workspace_id=str(workspace),
                    scope=actions_pb2.SCOPE_FLEET,
                    reason="bench",
                    request_id=uuid.uuid4().hex,
                    resume_agent=actions_pb2.ResumeAgentParams(),
                )
                await stub.Execute(resume, metadata=scenarios.bearer(token), timeout=600)
                await conn.execute("VACUUM (ANALYZE) agents", timeout=600)
        finally:
            await conn.close()
    return pauses


@dataclass(frozen=True)
class Replay:
    """One WatchActions replay: events per second, and CPU per event."""

    events_per_s: float
    cpu_us_per_event: float  # action service + this client + the service's backends


async def watch_replay(
    target: str, token: str, workspace: uuid.UUID, last_seq: int, meter: CpuMeter
) -> Replay:
    """Replay a workspace's whole history through WatchActions.

    A real gRPC client opens the stream from seq 0 and reads (and parses) every event
    until it has the one with ``last_seq``; the time runs from the call to that event.

    Args:
        target: The action service's address.
        token: A user token with ``actions:read`` on the workspace.
        workspace: The workspace whose chain is replayed.
        last_seq: The seq of the chain's last event.
        meter: Measures the action service, this process and the database's backends.

    Returns:
        Events received per second of wall time, and CPU microseconds per event.

    Raises:
        RuntimeError: An event arrived out of order (the stream must be gap-free).
    """
    options = [("grpc.max_receive_message_length", _MAX_MESSAGE)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub: Any = actions_pb2_grpc.ActionServiceStub(channel)
        request = actions_pb2.WatchActionsRequest(workspace_id=str(workspace), after_seq=0)
        await meter.start()
        begun = time.perf_counter()
        call = stub.WatchActions(request, metadata=scenarios.bearer(token))
        expected = 1
        try:
            async for event in call:
                if event.seq != expected:
                    raise RuntimeError(f"WatchActions sent seq {event.seq}, expected {expected}")
                if event.seq == last_seq:
                    break
                expected += 1
            else:
                raise RuntimeError(f"WatchActions ended at seq {expected - 1} of {last_seq}")
            elapsed = time.perf_counter() - begun
            cpu = await meter.stop()
        finally:
            call.cancel()
    return Replay(last_seq / elapsed, cpu * 1e6 / last_seq)


@dataclass(frozen=True)
class Verified:
    """One ``audit verify`` run: the verifier's events per second, and CPU per event."""

    events_per_s: float
    cpu_us_per_event: float  # the verifier, its reader process and their backends


async def verify_events(dsn: str, workspace: uuid.UUID, events: int) -> Verified:
    """Run ``audit verify`` (the function the CLI runs) over one workspace.

    Args:
        dsn: The scratch database.
        workspace: The workspace to verify (the CLI's ``--workspace``).
        events: How many events the chain must have.

    Returns:
        The verifier's own figure (checked events per second of wall time), and the CPU
        it took per event: this process, the reader process it starts for a long chain,
        and their database backends (sampled every 0.25 s; a backend's last quarter
        second may be missed).

    Raises:
        RuntimeError: The verifier found something, or checked another number of events.
    """
    findings: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        meter = CpuMeter(conn, [os.getpid()], new_children=True, poll_s=0.25)
        await meter.start()
        report = await verify(dsn, workspace, emit=findings.append)
        cpu = await meter.stop()
    finally:
        await conn.close()
    if report.breaks or report.events != events:
        raise RuntimeError(
            f"audit verify checked {report.events} of {events} events and found "
            f"{len(report.breaks)} problem(s): {findings[:3]}"
        )
    return Verified(report.events_per_second, cpu * 1e6 / report.events)


@dataclass(frozen=True)
class PolicyUnderTest:
    """A running policy service, the policy it serves and the Check requests to ask it."""

    lines: int
    service: procs.Service
    items: list[tuple[str, ...]]

    @property
    def target(self) -> str:
        """The service's address."""
        return self.service.target


def policy_of(lines: int) -> policygen.GeneratedPolicy:
    """A generated policy of exactly ``lines`` lines.

    Args:
        lines: The policy's size.

    Returns:
        90 % ``p`` lines and 10 % ``g`` links (at least 40, so that some users are bound
        to a role in a workspace), from :func:`policygen.generate`.
    """
    links = max(40, lines // 10)
    return policygen.generate(rules=lines - links, links=links)


@contextlib.contextmanager
def policy_services(
    sizes: Sequence[int], secret: str, work: Path, env: Mapping[str, str]
) -> Iterator[list[PolicyUnderTest]]:
    """One policy service per size, started together (the largest takes longest to load).

    Args:
        sizes: Policy sizes in lines.
        secret: The service-token secret the services accept.
        work: Where the policies, logs and decision logs go.
        env: Further settings for every service.

    Yields:
        The services, in the order of ``sizes``.
    """
    started: list[procs.Service] = []
    services = []
    try:
        for lines in sizes:
            policy = policy_of(lines)
            directory = policygen.write_policy_dir(work / f"growth-policy{lines}", policy)
            settings = {
                **env,
                "FLEETWARD_METRICS_PORT": "0",
                "FLEETWARD_SERVICE_JWT_SECRET": secret,
                "FLEETWARD_POLICY_ADDR": "127.0.0.1:0",
                "FLEETWARD_POLICY_WATCH": "0",
                "FLEETWARD_POLICY_ALLOWED_CALLERS": "svc:actions,svc:bench",
                "FLEETWARD_POLICY_DIR": str(directory),
                "FLEETWARD_POLICY_DECISION_LOG": str(work / f"growth-decisions{lines}.jsonl"),
            }
            name = f"growth-policy{lines}"
            service = procs.Service.start(
                "services.policy", settings, work / f"{name}.log", name=name
            )
            started.append(service)
            items = scenarios.check_items(policy, 5000, seed=lines)
            services.append((lines, service, items))
        ready = []
        for lines, service, items in services:
            service.wait_for_port(120)
            ready.append(PolicyUnderTest(lines, service, items))
        yield ready
    finally:
        for service in started:
            service.stop(grace_s=15)


async def check_p50s_ms(
    services: Sequence[PolicyUnderTest], secret: str, calls: int, rounds: int
) -> dict[int, tuple[float, float]]:
    """Sequential Check latencies on every service, in interleaved rounds.

    The services take turns (``rounds`` rounds of ``calls // rounds`` calls each, in a
    shuffled order per round), so that a change in the machine's load falls on all sizes
    alike instead of on whichever ran last.

    Args:
        services: The running policy services.
        secret: The service-token secret.
        calls: Calls per service in all.
        rounds: How many turns each service gets.

    Returns:
        By policy size: (p50, p99) in milliseconds.
    """
    rng = random.Random(17)
    times: dict[int, list[float]] = {s.lines: [] for s in services}
    for _ in range(rounds):
        token = mint_service_token(secret, "bench")  # 5-minute tokens; one per round
        for service in rng.sample(list(services), len(services)):
            taken, _ = await scenarios.check_latencies_ms(
                service.target, token, service.items, calls // rounds
            )
            times[service.lines].extend(taken)
    return {lines: (percentile(t, 50), percentile(t, 99)) for lines, t in times.items()}


def new_secret() -> str:
    """A fresh HS256 secret."""
    return secrets.token_hex(32)
