"""Processes for the bench: both services, an echo server, a scratch database.

Every server listens on port 0; the bench reads the bound port from the service's log
(``… listening on port N``) or, for the echo server, from its first stdout line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from services.actions.migrate import migrate
from services.dev import scratch

REPO = Path(__file__).resolve().parents[1]
_PORT_RE = re.compile(r"listening on port (\d+)")


@dataclass
class Service:
    """A started service process and the ``host:port`` it serves on."""

    name: str
    process: subprocess.Popen[bytes]
    target: str
    log_path: Path

    def peak_rss_mb(self) -> float:
        """The process's peak resident set size so far (VmHWM), in MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL after 15 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], log_path: Path, name: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}); see {log_path}")
        match = _PORT_RE.search(log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not report its port within 60 s; see {log_path}")


# ``python -m MODULE serve`` on uvloop's event loop (``--uvloop``; uvloop is not a dependency).
_UVLOOP = (
    "import asyncio, runpy, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "sys.argv = [sys.argv[1], 'serve']; runpy.run_module(sys.argv[0], run_name='__main__')"
)


@contextlib.contextmanager
def service(
    name: str, module: str, env: Mapping[str, str], log_dir: Path, *, uvloop: bool = False
) -> Iterator[Service]:
    """Run ``python -m MODULE serve`` with ``env`` added; yield it once it listens."""
    log_path = log_dir / f"{name}.log"
    command = [sys.executable, "-c", _UVLOOP, module] if uvloop else [sys.executable, "-m", module]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "serve"] if not uvloop else command,
            env={**os.environ, **env},
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        started = Service(name, process, "", log_path)
        try:
            port = _wait_for_port(process, log_path, name)
            started.target = f"127.0.0.1:{port}"
            yield started
        finally:
            started.stop()


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
