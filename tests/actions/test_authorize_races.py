"""The agents authorized cover the agents changed: an agent that joins the department (or
moves within the fleet) between the permission check and the effect's row locks is left
unchanged and reported, never changed unchecked.

The window is made deterministic by a policy service in front of the real one that,
right after answering CheckResources, moves an agent in the database.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.client import PauseAgent, action_result
from fleetward.policy.v1 import policy_pb2_grpc

from tests.actions.guarded import Guarded, create_workspace, guarded_policy, statuses
from tests.conftest import Secrets
from tests.servers import running_action_server, running_policy_server

Hook = Callable[[], Awaitable[None]]


class HookedPolicy(policy_pb2_grpc.PolicyServiceServicer):
    """Forwards to the real policy service; runs ``hook`` once after a CheckResources."""

    def __init__(self, upstream: Any) -> None:
        self._up = upstream
        self.hook: Hook | None = None

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
        answer = await self._up.CheckResources(request, metadata=self._auth(context))
        hook, self.hook = self.hook, None
        if hook is not None:
            await hook()
        return answer


@dataclass
class Raced:
    """The guarded action service behind the hooked policy service."""

    guarded: Guarded
    policy: HookedPolicy


@pytest.fixture(scope="module")
async def raced(
    database_dsn: str, dev_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Raced]:
    """Real policy service → hooked proxy → real action service."""
    policy_dir = guarded_policy(tmp_path_factory.mktemp("raced"))
    async with contextlib.AsyncExitStack() as stack:
        real = await stack.enter_async_context(running_policy_server(policy_dir, dev_secrets))
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(real))
        hooked = HookedPolicy(policy_pb2_grpc.PolicyServiceStub(channel))
        proxy = grpc.aio.server()
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(hooked, proxy)
        port = proxy.add_insecure_port("127.0.0.1:0")
        await proxy.start()
        stack.push_async_callback(proxy.stop, 0)
        target = await stack.enter_async_context(
            running_action_server(
                database_dsn, f"127.0.0.1:{port}", dev_secrets, policy_timeout_ms=5000
            )
        )
        yield Raced(Guarded(target, real, dev_secrets), hooked)


def _move(pool: asyncpg.Pool, ws: uuid.UUID, agent: str, department: str) -> Hook:
    async def move() -> None:
        await pool.execute(
            "UPDATE agents SET department_id = $3 WHERE workspace_id = $1 AND agent_id = $2",
            ws,
            agent,
            department,
        )

    return move


async def _pause(raced: Raced, subject: str, ws: uuid.UUID, **kw: Any) -> Any:
    async with raced.guarded.client(subject) as client:
        return await client.execute(workspace_id=str(ws), reason="race", params=PauseAgent(), **kw)


async def test_an_agent_that_joins_the_department_after_the_check_is_left_unchanged(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    # eng-review-9 sits in support; bob may pause it there. It moves into engineering,
    # where bob is denied pausing eng-review-*, after bob's department pause was checked.
    ws = await create_workspace(
        pool, {"eng-code-1": "engineering", "eng-code-2": "engineering", "eng-review-9": "support"}
    )
    raced.policy.hook = _move(pool, ws, "eng-review-9", "engineering")
    action = await _pause(raced, "bob", ws, scope="department", target_id="engineering")
    result = action_result(action)
    assert {a.agent_id for a in result.agents} == {"eng-code-1", "eng-code-2"}
    assert [(s.target, s.reason) for s in result.skipped] == [("agent/eng-review-9", "unchecked")]
    assert (await statuses(pool, ws))["eng-review-9"] == "active"
    targets = await pool.fetch(
        "SELECT target_key FROM action_targets WHERE action_id = $1", uuid.UUID(action.action_id)
    )
    assert {t["target_key"] for t in targets} == {"eng-code-1", "eng-code-2"}


async def test_an_agent_whose_path_changes_after_a_fleet_check_is_left_unchanged(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    # frank may pause the fleet but not engineering/eng-review-*: eng-review-3 is allowed
    # where it was checked (support) and moves under the deny before the lock.
    ws = await create_workspace(
        pool, {"eng-code-1": "engineering", "eng-review-3": "support", "sup-chat-1": "support"}
    )
    raced.policy.hook = _move(pool, ws, "eng-review-3", "engineering")
    action = await _pause(raced, "frank", ws, scope="fleet")
    result = action_result(action)
    assert {a.agent_id for a in result.agents} == {"eng-code-1", "sup-chat-1"}
    assert [(s.target, s.reason) for s in result.skipped] == [("agent/eng-review-3", "unchecked")]
    assert (await statuses(pool, ws))["eng-review-3"] == "active"


async def test_the_hook_really_runs_between_check_and_lock(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    # Control: the same move before the action is simply part of the plan (and denied).
    ws = await create_workspace(pool, {"eng-code-1": "engineering", "eng-review-9": "support"})
    await _move(pool, ws, "eng-review-9", "engineering")()
    async with raced.guarded.client("bob") as client:
        preview = await client.execute(
            workspace_id=str(ws),
            scope="department",
            target_id="engineering",
            reason="race",
            params=PauseAgent(),
            validate_only=True,
            skip_denied=True,
        )
    assert [(s.target, s.reason) for s in action_result(preview).skipped] == [
        ("agent/eng-review-9", "denied")
    ]
