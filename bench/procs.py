"""Processes for the bench: both services, an echo server, a scratch database.

Every server listens on port 0; the bench reads the bound port from the service's log
(``… listening on port N``) or, for the echo server, from its first stdout line. The
services are started, watched and stopped by services/dev/processes.py, which the tests
use too; what only the bench needs (peak memory, CPU time) is here.

CPU per call is counted by :class:`CpuMeter`: the services' processes by pid, and of
PostgreSQL only the server the bench uses, its processes serving the bench's database and
its shared ones (checkpointer, WAL writer, …), never another database's backends or
another server on the same machine (:func:`cpu_seconds`, the older count, takes every
``postgres`` process of the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

from services.actions.migrate import migrate
from services.dev import scratch
from services.dev.processes import REPO, RunningService


class Service(RunningService):
    """A service process of the bench (services/dev/processes.py), and its peak memory."""

    def peak_rss_mb(self) -> float:
        """The process's peak resident set size so far (VmHWM), in MiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")


def policy_env(service_secret: str, policy_dir: Path, decision_log: Path) -> dict[str, str]:
    """A bench policy service's settings: port 0, no file watch, the bench's callers."""
    return {
        "FLEETWARD_METRICS_PORT": "0",
        "FLEETWARD_SERVICE_JWT_SECRET": service_secret,
        "FLEETWARD_POLICY_ADDR": "127.0.0.1:0",
        "FLEETWARD_POLICY_WATCH": "0",
        "FLEETWARD_POLICY_ALLOWED_CALLERS": "svc:actions,svc:bench",
        "FLEETWARD_POLICY_DIR": str(policy_dir),
        "FLEETWARD_POLICY_DECISION_LOG": str(decision_log),
    }


def actions_env(
    service_secret: str, jwt_secret: str, dsn: str, policy_target: str
) -> dict[str, str]:
    """A bench action service's settings: port 0, its database and policy service."""
    return {
        "FLEETWARD_METRICS_PORT": "0",
        "FLEETWARD_SERVICE_JWT_SECRET": service_secret,
        "DATABASE_URL": dsn,
        "FLEETWARD_ACTIONS_ADDR": "127.0.0.1:0",
        "FLEETWARD_POLICY_TARGET": policy_target,
        "FLEETWARD_JWT_SECRET": jwt_secret,
    }


@contextlib.contextmanager
def service(
    name: str, module: str, env: Mapping[str, str], log_dir: Path, *, uvloop: bool = False
) -> Iterator[Service]:
    """Run ``python -m MODULE serve`` with ``env`` on a clean environment; yield it once
    its log says which port it listens on (SIGTERM at the end, SIGKILL after 15 s)."""
    started = Service.start(module, env, log_dir / f"{name}.log", name=name, uvloop=uvloop)
    try:
        started.wait_for_port(60)
        yield started
    finally:
        started.stop(grace_s=15)


@dataclass(frozen=True)
class EchoServer:
    """The running echo server: its ``host:port`` and process id."""

    target: str
    pid: int


@contextlib.contextmanager
def echo_server() -> Iterator[EchoServer]:
    """The bare grpc.aio echo server (``bench.echo``) in its own process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.echo"], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.isdigit():
            raise RuntimeError(f"echo server did not start: {line!r}")
        yield EchoServer(f"127.0.0.1:{line}", process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


@dataclass
class OtlpSink:
    """The OTLP sink's environment for the services, and what it received (after it stopped).

    Disabled (``--tracing`` not given), it runs nothing and adds no variable.
    """

    target: str = ""
    received: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Variables that trace a service into the sink (none when disabled): every request
        unless ``OTEL_TRACES_SAMPLER`` says otherwise (``always_off``: the instrumentation's
        cost alone)."""
        if not self.target:
            return {}
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self.target}",
            "OTEL_TRACES_SAMPLER": os.environ.get("OTEL_TRACES_SAMPLER", "always_on"),
        }


@contextlib.contextmanager
def otlp_sink(enabled: bool) -> Iterator[OtlpSink]:
    """``bench.otlp_sink`` in its own process while enabled; ``received`` is filled when it
    stops (stop it after the services, which flush their last spans when they stop)."""
    sink = OtlpSink()
    if not enabled:
        yield sink
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.otlp_sink"], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.isdigit():
            raise RuntimeError(f"OTLP sink did not start: {line!r}")
        sink.target = f"127.0.0.1:{line}"
        yield sink
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
        last = output.decode().strip().splitlines()[-1:] if output else []
        if last:
            sink.received = json.loads(last[0])


@contextlib.asynccontextmanager
async def scratch_database(server_dsn: str) -> AsyncIterator[str]:
    """A new, migrated database on the server of ``server_dsn``; dropped afterwards."""
    async with scratch.scratch_database(server_dsn, "fleetward_bench", owner=None) as dsn:
        await migrate(dsn)
        yield dsn


def cpu_seconds(pids: list[int], include_postgres: bool = False) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``pids`` and, optionally, all postgres."""
    out: dict[str, float] = {}
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        out[str(pid)] = times.user + times.system
    if include_postgres:
        total = 0.0
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] and proc.info["name"].startswith("postgres"):
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
        out["postgres"] = total
    return out


# A client backend's title after its last ": ": "user database host(port) activity…".
_HOST = re.compile(r"^(\[local\]|\S+\(\d+\))$")


@dataclass(frozen=True)
class PostgresServer:
    """The PostgreSQL server the bench uses: its postmaster's pid and the bench's database."""

    postmaster: int
    database: str

    @classmethod
    async def of(cls, dsn: str) -> PostgresServer:
        """The server and database ``dsn`` connects to (a backend's parent is the postmaster).

        Args:
            dsn: The bench's scratch database.
        """
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow("SELECT pg_backend_pid() AS pid, current_database() AS db")
            assert row is not None
            return cls(psutil.Process(row["pid"]).ppid(), row["db"])  # while the backend runs
        finally:
            await conn.close()

    def pids(self) -> list[int]:
        """The postmaster and its children, but for client backends of other databases."""
        found = [self.postmaster]
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.postmaster).children():
                with contextlib.suppress(psutil.Error):
                    words = " ".join(child.cmdline()).rsplit(": ", 1)[-1].split()
                    backend = len(words) >= 3 and _HOST.match(words[2]) is not None
                    if not backend or words[1] == self.database:
                        found.append(child.pid)
        return found


@dataclass(frozen=True)
class CpuMeter:
    """Samples CPU seconds (user + system) of named processes, of one PostgreSQL server's
    processes for the bench (:meth:`PostgresServer.pids`) and of the whole machine.

    Give :meth:`sample` to ``run_load`` (its ``sample``), then :meth:`totals` of what it
    returns: one value per name, ``postgres`` and ``machine`` (busy seconds of all cores).
    """

    named: Mapping[str, int]
    postgres: PostgresServer

    def sample(self) -> dict[str, float]:
        """CPU seconds so far: ``name``, ``pg:<pid>`` for each PostgreSQL process, ``machine``."""
        out = {name: _cpu(pid) for name, pid in self.named.items()}
        for pid in self.postgres.pids():
            out[f"pg:{pid}"] = _cpu(pid)
        machine = psutil.cpu_times()
        out["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return out

    @staticmethod
    def totals(spent: Mapping[str, float]) -> dict[str, float]:
        """Differences of two samples with PostgreSQL's processes added up as ``postgres``.

        A backend that started in the window counts from its start; one that ended in it
        is lost (the services' pools keep theirs open).
        """
        out = {key: value for key, value in spent.items() if not key.startswith("pg:")}
        out["postgres"] = sum(value for key, value in spent.items() if key.startswith("pg:"))
        return out


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def rpc_count(metrics_port: int, method: str) -> float:
    """How many ``method`` calls (any code) a service's ``/metrics`` has counted so far.

    Args:
        metrics_port: Its ``FLEETWARD_METRICS_PORT`` on 127.0.0.1.
        method: The method's name, e.g. ``Execute``.
    """
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("fleetward_rpc_requests_total{") and f'/{method}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
