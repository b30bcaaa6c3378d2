"""Real policy servers on port 0, service tokens, and scratch copies of ``policies/``."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from services.policy import decision_log
from services.policy.server import PolicyServer, build_server
from services.policy.settings import PolicySettings
from tests.conftest import Secrets

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICIES = REPO_ROOT / "policies"
DEMO_WS = "ac3e0000-0000-4000-8000-000000000001"
OTHER_WS = "0b5e0000-0000-4000-8000-000000000002"
AGENT = "fleet/departments/engineering/agents/eng-code-1"
DEPARTMENT = "fleet/departments/engineering"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)


@dataclass
class RunningPolicy:
    """A started policy server and an authenticated stub for it."""

    built: PolicyServer
    channel: grpc.aio.Channel
    stub: Any  # PolicyServiceStub (its generated stub is untyped for aio)
    metadata: tuple[tuple[str, str], ...]

    @property
    def target(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.built.port}"

    async def check(self, subject: str, action: str, resource: str, **kw: Any) -> Any:
        """Check with the service token; ``workspace_id`` defaults to the demo workspace."""
        request = policy_pb2.CheckRequest(
            subject=subject,
            workspace_id=kw.pop("workspace_id", DEMO_WS),
            action=action,
            resource=resource,
            **kw,
        )
        return await self.stub.Check(request, metadata=self.metadata)

    async def info(self) -> Any:
        """GetPolicyInfo with the service token."""
        return await self.stub.GetPolicyInfo(
            policy_pb2.GetPolicyInfoRequest(), metadata=self.metadata
        )


StartPolicy = Callable[..., contextlib.AbstractAsyncContextManager[RunningPolicy]]


@pytest.fixture
def start_policy(dev_secrets: Secrets) -> StartPolicy:
    """``async with start_policy(directory) as running:`` a started server on port 0."""

    @contextlib.asynccontextmanager
    async def start(directory: Path = POLICIES, **settings: Any) -> AsyncIterator[RunningPolicy]:
        config = PolicySettings(
            listen_addr="127.0.0.1:0",
            policy_dir=directory,
            service_jwt_secret=dev_secrets.service_jwt_secret,
            metrics_port=0,
            watch=settings.pop("watch", False),
            **settings,
        )
        built = await build_server(config)
        await built.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
        try:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            yield RunningPolicy(built, channel, stub, bearer(dev_secrets.service_token()))
        finally:
            await channel.close()
            await built.stop(grace=0)

    return start


@pytest.fixture
async def demo(start_policy: StartPolicy) -> AsyncIterator[RunningPolicy]:
    """A server on the real ``policies/`` (read only, no watcher)."""
    async with start_policy() as running:
        yield running


@pytest.fixture
def restore_decision_logger() -> Iterator[None]:
    """Leave the decision log off (its state before any ``configure``) after the test."""
    yield
    decision_log.stop()


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    """A scratch copy of ``policies/`` that a test may edit."""
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target
