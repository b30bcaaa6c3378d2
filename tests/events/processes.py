"""Real service processes for process-level tests (SIGKILL, SIGTERM, two replicas, metrics)."""

from __future__ import annotations

import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from services.dev.processes import RunningService, free_port
from tests.conftest import Secrets


@dataclass
class ServiceProcess:
    """One ``python -m services.<name> serve`` process on ports chosen beforehand, with its
    log file; started again (after a kill) on the same ports, into the same log.

    Starting, waiting and stopping are services/dev/processes.py's (the bench's too).
    """

    name: str
    port: int
    metrics_port: int
    log: Path
    proc: RunningService | None = field(default=None, repr=False)
    # The module run as ``python -m MODULE serve`` (default ``services.<name>``).
    module: str = ""

    @property
    def target(self) -> str:
        """``host:port`` of its gRPC server."""
        return f"127.0.0.1:{self.port}"

    async def start(self, env: dict[str, str], *, wait_s: float = 30) -> None:
        """Start with ``env`` on a clean environment; wait until its overall health is SERVING."""
        self.proc = RunningService.start(
            self.module or f"services.{self.name}",
            env,
            self.log,
            name=self.name,
            target=self.target,
        )
        await self.proc.wait_serving_async(wait_s)

    async def serving(self) -> bool:
        """Whether overall health answers SERVING."""
        return self.proc is not None and await self.proc.serving_async()

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig``."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, limit_s: float = 30) -> int:
        """Wait for exit; the exit code."""
        assert self.proc is not None
        return await self.proc.wait_async(limit_s)

    async def stop(self) -> None:
        """SIGTERM and wait (SIGKILL if it hangs)."""
        if self.proc is not None:
            await self.proc.stop_async(grace_s=20)

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
    """Settings of a policy service process (``start`` adds them to a clean environment)."""
    return {
        "FLEETWARD_POLICY_ADDR": proc.target,
        "FLEETWARD_POLICY_DIR": str(policy_dir),
        "FLEETWARD_SERVICE_JWT_SECRET": secrets.service_jwt_secret,
        "FLEETWARD_METRICS_PORT": str(proc.metrics_port),
        "FLEETWARD_POLICY_DECISION_LOG": "off",
        "FLEETWARD_POLICY_WATCH": "0",
    }


def action_process(log_dir: Path, label: str, *, test_catalog: bool = False) -> ServiceProcess:
    """An unstarted action service process description; with ``test_catalog``, one whose
    ``restart_agent`` has an external effect (:mod:`tests.catalog`).
    """
    module = "tests.catalog.actions_service" if test_catalog else ""
    log = log_dir / f"actions-{label}.log"
    return ServiceProcess("actions", free_port(), free_port(), log, module=module)


def action_env(
    proc: ServiceProcess,
    dsn: str,
    policy_target: str,
    secrets: Secrets,
    **extra: str,
) -> dict[str, str]:
    """Settings of an action service process (``extra``: FLEETWARD_* overrides), added to a
    clean environment by ``start``."""
    return {
        "DATABASE_URL": dsn,
        "FLEETWARD_ACTIONS_ADDR": proc.target,
        "FLEETWARD_POLICY_TARGET": policy_target,
        "FLEETWARD_JWT_SECRET": secrets.jwt_secret,
        "FLEETWARD_SERVICE_JWT_SECRET": secrets.service_jwt_secret,
        "FLEETWARD_METRICS_PORT": str(proc.metrics_port),
        **extra,
    }
