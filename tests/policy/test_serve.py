"""``python -m services.policy serve`` as a process: SIGHUP reloads, SIGTERM stops cleanly."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.dev.processes import RunningService
from tests.conftest import Secrets
from tests.policy.conftest import DEMO_WS, bearer


def start_policy(policy_dir: Path, secrets: Secrets, log: Path, **settings: str) -> RunningService:
    """``python -m services.policy serve`` on port 0 (a clean environment but ``settings``)."""
    env = {
        "FLEETWARD_POLICY_ADDR": "127.0.0.1:0",
        "FLEETWARD_POLICY_DIR": str(policy_dir),
        "FLEETWARD_SERVICE_JWT_SECRET": secrets.service_jwt_secret,
        "FLEETWARD_METRICS_PORT": "0",
        "FLEETWARD_POLICY_WATCH": "0",
        "FLEETWARD_POLICY_DECISION_LOG": "off",
        **settings,
    }
    return RunningService.start("services.policy", env, log)


async def test_sighup_reloads_and_sigterm_stops_gracefully(
    policy_copy: Path, dev_secrets: Secrets, tmp_path: Path
) -> None:
    proc = start_policy(policy_copy, dev_secrets, tmp_path / "policy.log")
    try:
        await proc.wait_for_port_async(60)
        async with grpc.aio.insecure_channel(proc.target) as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)
            status = await health.Check(health_pb2.HealthCheckRequest())
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            stub: Any = policy_pb2_grpc.PolicyServiceStub(channel)
            metadata = bearer(dev_secrets.service_token())
            before = await stub.GetPolicyInfo(policy_pb2.GetPolicyInfoRequest(), metadata=metadata)
            with (policy_copy / "policy.csv").open("a") as f:
                f.write(f"g, frank, operator, {DEMO_WS}\n")
            proc.send_signal(signal.SIGHUP)

            async def reloaded() -> None:
                while True:
                    info = await stub.GetPolicyInfo(
                        policy_pb2.GetPolicyInfoRequest(), metadata=metadata
                    )
                    if info.policy_version != before.policy_version:
                        return
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(reloaded(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait_async(30) == 0
    finally:
        await proc.stop_async()
