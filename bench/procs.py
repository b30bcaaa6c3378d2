"""Processes for the bench: both services, an echo server, a scratch database.

Every server listens on port 0; the bench reads the bound port from the service's log
(``… listening on port N``) or, for the echo server, from its first stdout line. The
services are started, watched and stopped by services/dev/processes.py, which the tests
use too; what only the bench needs (peak memory, CPU time) is here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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


@contextlib.contextmanager
def echo_server() -> Iterator[str]:
    """The bare grpc.aio echo server (``bench.echo``) in its own process; yields its target."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.echo"], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.isdigit():
            raise RuntimeError(f"echo server did not start: {line!r}")
        yield f"127.0.0.1:{line}"
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
