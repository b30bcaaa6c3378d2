"""The budget of CheckResources (docs/architecture.md §5.9): the caller's deadline holds
across the several calls a large question takes.

The policy service is the real one, behind a proxy in this process that delays, stalls
or reloads it deterministically and records the size and deadline of every
CheckResources call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from fleetward.policy.v1 import policy_pb2_grpc

from services.actions.policy_gateway import PolicyGateway
from services.common.status import ServiceError
from services.policy.server import PolicyServer
from tests.actions.helpers import Api
from tests.conftest import Secrets
from tests.servers import running_action_server, running_policy_server_handle, write_test_policy

Hook = Callable[[], Awaitable[None]]
POLICY_TIMEOUT_MS = 600  # the action service's policy budget in this module


@dataclass(frozen=True)
class Seen:
    """One CheckResources call as the proxy saw it."""

    paths: int
    deadline: float  # time.monotonic() when the caller's timeout ends it


class SlowPolicy(policy_pb2_grpc.PolicyServiceServicer):
    """Forwards to the real policy service; CheckResources first waits ``per_call_s`` plus
    ``per_path_s`` per path, or forever while ``stalled``; ``after_answer`` runs after
    each CheckResources answer."""

    def __init__(self, upstream: Any) -> None:
        self._up = upstream
        self.reset()

    def reset(self) -> None:
        """Fast, answering, no hook, nothing seen."""
        self.per_call_s = 0.0
        self.per_path_s = 0.0
        self.stalled = False
        self.after_answer: Hook | None = None
        self.calls: list[Seen] = []

    @staticmethod
    def _auth(context: grpc.aio.ServicerContext[Any, Any]) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in context.invocation_metadata() or () if k == "authorization"]

    async def Check(self, request: Any, context: Any) -> Any:
        return await self._up.Check(request, metadata=self._auth(context))

    async def BatchCheck(self, request: Any, context: Any) -> Any:
        return await self._up.BatchCheck(request, metadata=self._auth(context))

    async def GetPolicyInfo(self, request: Any, context: Any) -> Any:
        return await self._up.GetPolicyInfo(request, metadata=self._auth(context))

    async def CheckResources(self, request: Any, context: Any) -> Any:
        paths = len(request.resources)
        self.calls.append(Seen(paths, time.monotonic() + context.time_remaining()))
        if self.stalled:
            await asyncio.Event().wait()  # never answers: the call's deadline ends it
        await asyncio.sleep(self.per_call_s + self.per_path_s * paths)
        answer = await self._up.CheckResources(request, metadata=self._auth(context))
        if self.after_answer is not None:
            await self.after_answer()
        return answer


@dataclass
class Slowed:
    """The action service behind the slowed policy service, and what it needs."""

    api: Api
    proxy: SlowPolicy
    proxy_target: str
    real: PolicyServer
    policy_dir: Path
    secrets: Secrets


@pytest.fixture(scope="module")
async def slowed(
    database_dsn: str, dev_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Slowed]:
    """Real policy service → slowing proxy → real action service (policy budget 0.6 s)."""
    policy_dir = write_test_policy(tmp_path_factory.mktemp("slowed"))
    async with contextlib.AsyncExitStack() as stack:
        real = await stack.enter_async_context(
            running_policy_server_handle(policy_dir, dev_secrets)
        )
        upstream = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"127.0.0.1:{real.port}")
        )
        proxy = SlowPolicy(policy_pb2_grpc.PolicyServiceStub(upstream))
        server = grpc.aio.server()
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(proxy, server)
        proxy_target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        stack.push_async_callback(server.stop, 0)
        target = await stack.enter_async_context(
            running_action_server(
                database_dsn, proxy_target, dev_secrets, policy_timeout_ms=POLICY_TIMEOUT_MS
            )
        )
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
        yield Slowed(Api(channel, dev_secrets), proxy, proxy_target, real, policy_dir, dev_secrets)


@pytest.fixture(autouse=True)
def fresh_proxy(slowed: Slowed) -> None:
    """Every test starts with a fast, answering proxy."""
    slowed.proxy.reset()


def _paths(count: int) -> list[str]:
    return [f"fleet/departments/dept-{i % 10}/agents/agent-{i:05d}" for i in range(count)]


@contextlib.asynccontextmanager
async def _gateway(slowed: Slowed) -> AsyncIterator[PolicyGateway]:
    gateway = PolicyGateway(
        slowed.proxy_target, slowed.secrets.service_jwt_secret, timeout_ms=POLICY_TIMEOUT_MS
    )
    try:
        yield gateway
    finally:
        await gateway.close()


async def test_the_callers_deadline_holds_across_the_calls(slowed: Slowed) -> None:
    # Every call takes 0.4 s more; the caller has 1 s. The third call cannot end in time,
    # and no call may be given time past the caller's deadline (each once got the whole
    # second again).
    slowed.proxy.per_call_s = 0.4
    workspace = str(uuid.uuid4())
    async with _gateway(slowed) as gateway:
        begun = time.monotonic()
        with pytest.raises(ServiceError) as err:
            await gateway.check_resources(
                "alice", workspace, "actions:pause_agent", _paths(40_001), remaining_s=1.0
            )
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert slowed.proxy.calls
    assert max(seen.deadline for seen in slowed.proxy.calls) <= begun + 1.0 + 0.25
