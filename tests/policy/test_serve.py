"""``python -m services.policy serve`` as a process: SIGHUP reloads, SIGTERM stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import Secrets
from tests.policy.conftest import DEMO_WS, REPO_ROOT, bearer

_PORT = re.compile(r"listening on port (\d+)")


async def _port_from_log(stream: asyncio.StreamReader, seen: list[str]) -> int:
    while True:
        raw = await stream.readline()
        if not raw:
            raise AssertionError("the service exited before listening:\n" + "".join(seen))
        line = raw.decode()
        seen.append(line)
        try:
            message = str(json.loads(line).get("message", ""))
        except ValueError:
            message = line
        found = _PORT.search(message)
        if found:
            return int(found.group(1))


async def test_sighup_reloads_and_sigterm_stops_gracefully(
    policy_copy: Path, dev_secrets: Secrets
) -> None:
    env = {
        **os.environ,
        "FLEETWARD_POLICY_ADDR": "127.0.0.1:0",
        "FLEETWARD_POLICY_DIR": str(policy_copy),
        "FLEETWARD_SERVICE_JWT_SECRET": dev_secrets.service_jwt_secret,
        "FLEETWARD_METRICS_PORT": "0",
        "FLEETWARD_POLICY_WATCH": "0",
        "FLEETWARD_POLICY_DECISION_LOG": "off",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.policy",
        "serve",
        cwd=REPO_ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        port = await asyncio.wait_for(_port_from_log(proc.stderr, seen), timeout=60)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
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
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
