"""Real service processes for process-level tests (SIGKILL, SIGTERM, two replicas, metrics)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import Secrets

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment without any inherited FLEETWARD_* / DATABASE_URL, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLEETWARD_") and k not in ("DATABASE_URL", "PYTHONPATH")
    }
    env.update(extra)
    return env


@dataclass
class ServiceProcess:
    """One ``python -m services.<name> serve`` process with its ports and log file."""

    name: str
    port: int
    metrics_port: int
    log: Path
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        """``host:port`` of its gRPC server."""
        return f"127.0.0.1:{self.port}"

    async def start(self, env: dict[str, str], *, wait_s: float = 30) -> None:
        """Start and wait until its overall health is SERVING."""
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{self.name}",
                "serve",
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log.read_text()}")
            if await self.serving():
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not SERVING in {wait_s} s:\n{self.log.read_text()}")

    async def serving(self) -> bool:
        """Whether overall health answers SERVING."""
        try:
            async with grpc.aio.insecure_channel(self.target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                request = health_pb2.HealthCheckRequest()
                reply = await stub.Check(request, timeout=1)  # type: ignore[attr-defined]
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig``."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, limit_s: float = 30) -> int:
        """Wait for exit; the exit code."""
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), limit_s)

    async def stop(self) -> None:
        """SIGTERM and wait (SIGKILL if it hangs)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            await self.wait(20)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.wait()

    def scrape(self) -> str:
        """The text of its /metrics endpoint."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            body: bytes = reply.read()
        return body.decode()


def policy_process(log_dir: Path) -> ServiceProcess:
    """An unstarted policy service process description."""
    return ServiceProcess("policy", free_port(), free_port(), log_dir / "policy.log")


def policy_env(proc: ServiceProcess, policy_dir: Path, secrets: Secrets) -> dict[str, str]:
    """Environment of a policy service process."""
    return base_env(
        {
            "FLEETWARD_POLICY_ADDR": proc.target,
            "FLEETWARD_POLICY_DIR": str(policy_dir),
            "FLEETWARD_SERVICE_JWT_SECRET": secrets.service_jwt_secret,
            "FLEETWARD_METRICS_PORT": str(proc.metrics_port),
            "FLEETWARD_POLICY_DECISION_LOG": "off",
            "FLEETWARD_POLICY_WATCH": "0",
        }
    )


def action_process(log_dir: Path, label: str) -> ServiceProcess:
    """An unstarted action service process description."""
    return ServiceProcess("actions", free_port(), free_port(), log_dir / f"actions-{label}.log")


def action_env(
    proc: ServiceProcess,
    dsn: str,
    policy_target: str,
    secrets: Secrets,
    **extra: str,
) -> dict[str, str]:
    """Environment of an action service process (``extra``: FLEETWARD_* overrides)."""
    return base_env(
        {
            "DATABASE_URL": dsn,
            "FLEETWARD_ACTIONS_ADDR": proc.target,
            "FLEETWARD_POLICY_TARGET": policy_target,
            "FLEETWARD_JWT_SECRET": secrets.jwt_secret,
            "FLEETWARD_SERVICE_JWT_SECRET": secrets.service_jwt_secret,
            "FLEETWARD_METRICS_PORT": str(proc.metrics_port),
            **extra,
        }
    )
