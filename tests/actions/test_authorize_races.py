"""What is changed is what was authorized, even when the world moves in between.

An agent that joins the department (or moves within the fleet) between the permission
check and the effect's row locks is left unchanged and reported, never changed
unchecked; where the action names the resource itself (agent scope, a budget of an
agent, a rollback's recorded targets) the action fails with ABORTED ``TARGETS_CHANGED``
instead. A policy reload between two questions never leaves a row that records one
version and decisions of another, and an answer that does not account for every
resource fails closed.

The windows are made deterministic by a policy service in front of the real one that
runs a hook right after answering a chosen RPC (and can tamper with answers).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.client import (
    Aborted,
    PauseAgent,
    PermissionDenied,
    ResumeAgent,
    RetryPolicy,
    SetBudget,
    Unavailable,
    action_result,
)
from fleetward.policy.v1 import policy_pb2_grpc

from services.policy.server import PolicyServer
from tests.actions.guarded import Guarded, create_workspace, guarded_policy, statuses
from tests.actions.policy_proxy import proxied_policy
from tests.conftest import Secrets
from tests.servers import running_action_server

Hook = Callable[[], Awaitable[None]]
Tamper = Callable[[Any], Any]


class HookedPolicy(policy_pb2_grpc.PolicyServiceServicer):
    """Forwards to the real policy service; after an RPC named in ``hooks`` answers, runs
    that hook once; ``tamper`` may rewrite a CheckResources answer."""

    def __init__(self, upstream: Any) -> None:
        self._up = upstream
        self.hooks: dict[str, Hook] = {}
        self.tamper: Tamper | None = None
        self.calls: list[str] = []  # the RPCs forwarded, in order

    @staticmethod
    def _auth(context: grpc.aio.ServicerContext[Any, Any]) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in context.invocation_metadata() or () if k == "authorization"]

    async def _forward(self, rpc: str, request: Any, context: Any) -> Any:
        self.calls.append(rpc)
        answer = await getattr(self._up, rpc)(request, metadata=self._auth(context))
        hook = self.hooks.pop(rpc, None)
        if hook is not None:
            await hook()
        return answer

    async def Check(self, request: Any, context: Any) -> Any:
        return await self._forward("Check", request, context)

    async def BatchCheck(self, request: Any, context: Any) -> Any:
        return await self._forward("BatchCheck", request, context)

    async def GetPolicyInfo(self, request: Any, context: Any) -> Any:
        return await self._forward("GetPolicyInfo", request, context)

    async def CheckResources(self, request: Any, context: Any) -> Any:
        answer = await self._forward("CheckResources", request, context)
        tamper, self.tamper = self.tamper, None
        return answer if tamper is None else tamper(answer)


@dataclass
class Raced:
    """The guarded action service behind the hooked policy service."""

    guarded: Guarded
    policy: HookedPolicy
    real: PolicyServer
    policy_dir: Path


@pytest.fixture(scope="module")
async def raced(
    database_dsn: str, dev_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Raced]:
    """Real policy service → hooked proxy → real action service."""
    policy_dir = guarded_policy(tmp_path_factory.mktemp("raced"))
    async with contextlib.AsyncExitStack() as stack:
        real, hooked, proxy_target = await proxied_policy(
            stack, policy_dir, dev_secrets, HookedPolicy
        )
        target = await stack.enter_async_context(
            running_action_server(database_dsn, proxy_target, dev_secrets, policy_timeout_ms=5000)
        )
        yield Raced(
            Guarded(target, f"127.0.0.1:{real.port}", dev_secrets), hooked, real, policy_dir
        )


def _move(pool: asyncpg.Pool, ws: uuid.UUID, agent: str, department: str) -> Hook:
    async def move() -> None:
        await pool.execute(
            "UPDATE agents SET department_id = $3 WHERE workspace_id = $1 AND agent_id = $2",
            ws,
            agent,
            department,
        )

    return move


# No retries: a retry after a failure the test provoked would only hide it.
ONCE = RetryPolicy(max_attempts=1)


async def _act(raced: Raced, subject: str, ws: uuid.UUID, **kw: Any) -> Any:
    async with raced.guarded.client(subject, retry=ONCE) as client:
        return await client.execute(workspace_id=str(ws), reason="race", **kw)


async def _rollback(raced: Raced, subject: str, ws: uuid.UUID, **kw: Any) -> Any:
    async with raced.guarded.client(subject, retry=ONCE) as client:
        return await client.rollback(workspace_id=str(ws), reason="race", **kw)


async def test_an_agent_that_joins_the_department_after_the_check_is_left_unchanged(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    # eng-review-9 sits in support; bob may pause it there. It moves into engineering,
    # where bob is denied pausing eng-review-*, after bob's department pause was checked.
    ws = await create_workspace(
        pool, {"eng-code-1": "engineering", "eng-code-2": "engineering", "eng-review-9": "support"}
    )
    raced.policy.hooks["CheckResources"] = _move(pool, ws, "eng-review-9", "engineering")
    action = await _act(
        raced, "bob", ws, scope="department", target_id="engineering", params=PauseAgent()
    )
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
    raced.policy.hooks["CheckResources"] = _move(pool, ws, "eng-review-3", "engineering")
    action = await _act(raced, "frank", ws, scope="fleet", params=PauseAgent())
    result = action_result(action)
    assert {a.agent_id for a in result.agents} == {"eng-code-1", "sup-chat-1"}
    assert [(s.target, s.reason) for s in result.skipped] == [("agent/eng-review-3", "unchecked")]
    assert (await statuses(pool, ws))["eng-review-3"] == "active"


async def test_the_same_move_before_the_check_is_simply_checked(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool, {"eng-code-1": "engineering", "eng-review-9": "support"})
    await _move(pool, ws, "eng-review-9", "engineering")()
    preview = await _act(
        raced,
        "bob",
        ws,
        scope="department",
        target_id="engineering",
        params=PauseAgent(),
        validate_only=True,
        skip_denied=True,
    )
    assert [(s.target, s.reason) for s in action_result(preview).skipped] == [
        ("agent/eng-review-9", "denied")
    ]


async def test_an_agent_named_by_the_action_that_moves_fails_it_unchanged(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool, {"eng-review-9": "support", "eng-code-1": "engineering"})
    raced.policy.hooks["Check"] = _move(pool, ws, "eng-review-9", "engineering")
    with pytest.raises(Aborted) as err:
        await _act(raced, "bob", ws, scope="agent", target_id="eng-review-9", params=PauseAgent())
    assert err.value.reason == "TARGETS_CHANGED"
    assert (await statuses(pool, ws))["eng-review-9"] == "active"
    row = await pool.fetchrow(
        "SELECT status, error_details FROM action_audit_log WHERE workspace_id = $1", ws
    )
    assert row is not None
    assert row["status"] == "failed"
    assert json.loads(row["error_details"])["reason"] == "TARGETS_CHANGED"


async def test_an_agent_budget_follows_the_agent_to_where_it_is_at_the_lock(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    # eve sets budgets in engineering only; the agent moves to support after the check.
    ws = await create_workspace(pool, {"eng-code-1": "engineering"}, also=["support"])
    raced.policy.hooks["Check"] = _move(pool, ws, "eng-code-1", "support")
    with pytest.raises(Aborted) as err:
        await _act(
            raced,
            "eve",
            ws,
            scope="agent",
            target_id="eng-code-1",
            params=SetBudget(monthly_limit_cents=5),
        )
    assert err.value.reason == "TARGETS_CHANGED"
    assert await pool.fetchval("SELECT count(*) FROM budgets WHERE workspace_id = $1", ws) == 0


async def test_a_rollback_whose_target_moved_since_the_check_fails_and_can_be_retried(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(
        pool, {"eng-code-1": "engineering", "eng-code-2": "engineering"}, also=["support"]
    )
    dept = {"scope": "department", "target_id": "engineering"}
    pause = await _act(raced, "alice", ws, params=PauseAgent(), **dept)
    raced.policy.hooks["CheckResources"] = _move(pool, ws, "eng-code-2", "support")
    with pytest.raises(Aborted) as err:
        await _rollback(raced, "alice", ws, action_id=pause.action_id)
    assert err.value.reason == "TARGETS_CHANGED"
    assert set((await statuses(pool, ws)).values()) == {"paused"}
    original = await pool.fetchval(
        "SELECT status FROM action_audit_log WHERE action_id = $1", uuid.UUID(pause.action_id)
    )
    assert original == "completed"  # not half rolled back
    undo = await _rollback(raced, "alice", ws, action_id=pause.action_id)  # checked anew
    assert action_result(undo).count == 2
    assert set((await statuses(pool, ws)).values()) == {"active"}


async def test_a_reload_between_the_rollback_questions_records_one_version(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool, {"eng-code-1": "engineering", "eng-code-2": "engineering"})
    dept = {"scope": "department", "target_id": "engineering"}
    resume_all = await _act(raced, "alice", ws, params=PauseAgent(), **dept)
    resume_all = await _act(raced, "alice", ws, params=ResumeAgent(), **dept)
    policy_csv = raced.policy_dir / "policy.csv"
    original_text = policy_csv.read_text()

    async def reload_with_a_new_version() -> None:
        policy_csv.write_text(original_text + "# a comment changes the version\n")
        assert await raced.real.reloader.reload()

    raced.policy.hooks["Check"] = reload_with_a_new_version  # right after the first gate
    try:
        undo = await _rollback(raced, "bob", ws, action_id=resume_all.action_id)
    finally:
        policy_csv.write_text(original_text)
        assert await raced.real.reloader.reload()
    snapshot = raced.real.reloader.state.snapshot
    assert snapshot is not None
    row = await pool.fetchrow(
        "SELECT policy_version, decision_id FROM action_audit_log WHERE action_id = $1",
        uuid.UUID(undo.action_id),
    )
    assert row is not None
    assert undo.policy_version == row["policy_version"]
    assert row["policy_version"] != resume_all.policy_version  # the reloaded one
    assert len(row["decision_id"].split(",")) == 2


async def test_an_answer_that_leaves_out_a_denial_fails_closed(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool, {"eng-code-1": "engineering", "eng-review-1": "engineering"})

    def drop_denials(answer: Any) -> Any:
        answer.ClearField("denied")
        return answer

    raced.policy.tamper = drop_denials
    with pytest.raises(Unavailable) as err:
        await _act(
            raced, "bob", ws, scope="department", target_id="engineering", params=PauseAgent()
        )
    assert err.value.reason == "POLICY_UNAVAILABLE"
    assert set((await statuses(pool, ws)).values()) == {"active"}


async def test_an_answer_that_repeats_one_denial_for_another_fails_closed(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    # bob is denied pausing both code-review agents. The answer lists eng-review-1's denial
    # twice and leaves out eng-review-2's: its count still adds up (2 allowed + 2 denials),
    # so a check that only counts read eng-review-2 as allowed and paused it.
    ws = await create_workspace(pool)

    def repeat_first_denial(answer: Any) -> Any:
        assert len(answer.denied) == 2
        first = answer.denied[0]
        del answer.denied[1]
        answer.denied.add().CopyFrom(first)
        return answer

    raced.policy.tamper = repeat_first_denial
    with pytest.raises(Unavailable) as err:
        await _act(
            raced,
            "bob",
            ws,
            scope="department",
            target_id="engineering",
            params=PauseAgent(),
            skip_denied=True,
        )
    assert err.value.reason == "POLICY_UNAVAILABLE"
    assert set((await statuses(pool, ws)).values()) == {"active"}


async def test_check_access_asks_an_outsider_the_same_whatever_exists(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    # Same questions, same answer, whether the target exists: no timing tells them apart.
    ws = await create_workspace(pool, {"eng-code-1": "engineering"})
    seen = []
    for target in ("eng-code-1", "no-such-agent"):
        raced.policy.calls.clear()
        async with raced.guarded.client("mallory", retry=ONCE) as client:
            with pytest.raises(PermissionDenied) as err:
                await client.check_access(workspace_id=str(ws), targets=[("agent", target)])
        seen.append((list(raced.policy.calls), err.value.message))
    assert seen[0] == seen[1]
    assert seen[0][0] == ["Check"]


async def test_check_access_reports_a_failed_policy_question_as_unavailable(
    raced: Raced, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)

    def miscount(answer: Any) -> Any:
        answer.allowed_count += 1
        return answer

    raced.policy.tamper = miscount  # one of the parallel CheckResources answers
    async with raced.guarded.client("bob", retry=ONCE) as client:
        with pytest.raises(Unavailable) as err:
            await client.check_access(
                workspace_id=str(ws), targets=[("department", "engineering"), ("fleet", "")]
            )
    assert err.value.reason == "POLICY_UNAVAILABLE"
