"""Hostile input to every RPC of both services (issue 8, bad input; docs/architecture.md §4).

Hypothesis draws the requests (see :mod:`tests.security.badinput`); they are then sent
16 at a time. Each must get exactly the status the contract gives it, with one
``fleetward`` ErrorInfo, never INTERNAL/UNKNOWN, and nothing may be written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc
from hypothesis import HealthCheck, given, settings

from services.policy.queries import MAX_REQUEST_BYTES
from tests.actions.helpers import Api, details
from tests.conftest import Secrets
from tests.reliability import counters
from tests.reliability.harness import create_workspace, writes
from tests.security.badinput import Case, all_cases

C = grpc.StatusCode
OWN_CODES = {C.RESOURCE_EXHAUSTED, C.DEADLINE_EXCEEDED}
MIB = 1024 * 1024


class Target:
    """The two services, called as any subject."""

    def __init__(
        self, actions: grpc.aio.Channel, policy: grpc.aio.Channel, secrets: Secrets
    ) -> None:
        self.actions = actions_pb2_grpc.ActionServiceStub(actions)
        self.policy = policy_pb2_grpc.PolicyServiceStub(policy)
        self.secrets = secrets

    def metadata(self, subject: str) -> tuple[tuple[str, str], ...]:
        if subject.startswith("garbage:"):
            return (("authorization", "Bearer " + subject.removeprefix("garbage:")),)
        if subject == "svc":
            return (("authorization", "Bearer " + self.secrets.service_token()),)
        return (("authorization", "Bearer " + self.secrets.user_token(subject)),)

    async def call(self, case: Case) -> grpc.aio.AioRpcError | None:
        """Send one case; the error, or None when it succeeded."""
        stub: Any = self.policy if case.service == "policy" else self.actions
        md = self.metadata(case.subject)
        try:
            if case.rpc == "WatchActions":
                # A valid stream stays open: 0.3 s shows it started (big uploads need more).
                limit = 5 if case.request.ByteSize() > 100_000 else 0.3
                stream = stub.WatchActions(case.request, metadata=md, timeout=limit)
                async for _ in stream:
                    pass
            else:
                await getattr(stub, case.rpc)(case.request, metadata=md, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc
        return None


def check(case: Case, exc: grpc.aio.AioRpcError | None) -> str | None:
    """Why the outcome breaks the contract, or None."""
    code = C.OK if exc is None else exc.code()
    if code not in case.expect:
        text = "" if exc is None else f" {exc.details()!r}"
        return f"{case.rpc} as {case.subject[:40]}: {code.name}{text}, expected " + ", ".join(
            sorted(c.name for c in case.expect)
        )
    if exc is not None and code not in OWN_CODES:
        info = details(exc)
        if info.error_infos != 1 or info.domain != "fleetward":
            return f"{case.rpc}: {code.name} without exactly one fleetward ErrorInfo"
    return None


@pytest.fixture(scope="module")
async def target(
    rel_channel: grpc.aio.Channel, rel_policy_target: str, dev_secrets: Secrets
) -> AsyncIterator[Target]:
    """Both services."""
    async with grpc.aio.insecure_channel(rel_policy_target) as policy:
        yield Target(rel_channel, policy, dev_secrets)


@pytest.fixture(scope="module")
async def corpus(
    rel_api: Api, pool: asyncpg.Pool, home_a: uuid.UUID
) -> tuple[list[uuid.UUID], list[str], list[str]]:
    """Two workspaces with actions, their ids, and real page tokens of one of them."""
    ws = await create_workspace(pool)
    actions = []
    for agent in ("eng-code-1", "eng-code-2", "sup-chat-1"):
        done = await rel_api.execute("alice", ws, "pause_agent", target=agent)
        actions.append(done.action_id)
    page = await rel_api.stub.ListActions(
        actions_pb2.ListActionsRequest(workspace_id=str(ws), page_size=1),
        metadata=rel_api.auth("bob"),
    )
    agents = await rel_api.stub.ListAgents(
        actions_pb2.ListAgentsRequest(workspace_id=str(ws), page_size=1),
        metadata=rel_api.auth("bob"),
    )
    tokens = [page.next_page_token, agents.next_page_token]
    return [ws, home_a], actions, tokens


async def fuzz(
    target: Target, pool: asyncpg.Pool, corpus: tuple[list[uuid.UUID], list[str], list[str]], n: int
) -> None:
    workspaces, actions, tokens = corpus
    cases: list[Case] = []
    strategy = all_cases([str(w) for w in workspaces], actions, tokens)

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def collect(case: Case) -> None:
        cases.append(case)

    collect()
    before = await writes(pool, workspaces)
    gate = asyncio.Semaphore(16)
    problems: list[str] = []

    async def one(case: Case) -> None:
        async with gate:
            exc = await target.call(case)
            if exc is not None and exc.code() in (C.INTERNAL, C.UNKNOWN):
                counters.record("internal_seen")
            problem = check(case, exc)
            if problem:
                problems.append(problem)

    await asyncio.gather(*(one(c) for c in cases))
    counters.record("bad_inputs", len(cases))
    counters.record("requests", len(cases))
    assert not problems, f"{len(problems)} of {len(cases)} broke the contract:\n" + "\n".join(
        sorted(set(problems))[:30]
    )
    assert await writes(pool, workspaces) == before, "a rejected request wrote something"
    types = await target.actions.ListActionTypes(
        actions_pb2.ListActionTypesRequest(), metadata=target.metadata("bob"), timeout=5
    )
    assert types.action_types, "the action service no longer answers"


async def test_a_few_hundred_hostile_requests_get_their_contract_status(
    target: Target, pool: asyncpg.Pool, corpus: tuple[list[uuid.UUID], list[str], list[str]]
) -> None:
    await fuzz(target, pool, corpus, 400)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_twenty_thousand_hostile_requests_get_their_contract_status(
    target: Target, pool: asyncpg.Pool, corpus: tuple[list[uuid.UUID], list[str], list[str]]
) -> None:
    # About a third make exactly one field of a valid request hostile (badinput.py).
    await fuzz(target, pool, corpus, 20_000)


def _huge_requests(ws: str) -> list[tuple[str, Any, str]]:
    big = "x" * (MIB + 1024)
    # The policy service (service callers only) takes CheckResources of 20,000 paths: 4 MiB.
    huge = "x" * (MAX_REQUEST_BYTES + 1024)
    return [
        ("Execute", actions_pb2.ExecuteRequest(workspace_id=ws, reason=big), "actions"),
        ("Rollback", actions_pb2.RollbackRequest(workspace_id=ws, reason=big), "actions"),
        ("GetAction", actions_pb2.GetActionRequest(workspace_id=ws, action_id=big), "actions"),
        (
            "ListActionEvents",
            actions_pb2.ListActionEventsRequest(workspace_id=ws, action_id=big),
            "actions",
        ),
        ("ListActions", actions_pb2.ListActionsRequest(workspace_id=ws, page_token=big), "actions"),
        ("GetAgent", actions_pb2.GetAgentRequest(workspace_id=ws, agent_id=big), "actions"),
        ("ListAgents", actions_pb2.ListAgentsRequest(workspace_id=big), "actions"),
        ("WatchActions", actions_pb2.WatchActionsRequest(workspace_id=big), "actions"),
        ("CheckAccess", actions_pb2.CheckAccessRequest(workspace_id=big), "actions"),
        ("Check", policy_pb2.CheckRequest(subject=huge), "policy"),
        (
            "BatchCheck",
            policy_pb2.BatchCheckRequest(checks=[policy_pb2.CheckRequest(subject=huge)]),
            "policy",
        ),
        ("CheckResources", policy_pb2.CheckResourcesRequest(resources=[huge]), "policy"),
    ]


async def test_messages_over_one_mib_are_resource_exhausted_on_every_rpc(
    target: Target, pool: asyncpg.Pool, corpus: tuple[list[uuid.UUID], list[str], list[str]]
) -> None:
    workspaces = corpus[0]
    before = await writes(pool, workspaces)
    for rpc, request, service in _huge_requests(str(workspaces[0])):
        subject = "svc" if service == "policy" else "alice"
        case = Case(rpc, request, subject, frozenset({C.RESOURCE_EXHAUSTED}), service)
        assert check(case, await target.call(case)) is None
        counters.record("bad_inputs")
    assert await writes(pool, workspaces) == before


async def test_page_tokens_forged_or_from_another_workspace_or_filter_are_invalid(
    rel_api: Api, corpus: tuple[list[uuid.UUID], list[str], list[str]]
) -> None:
    (ws, other), _, (actions_token, agents_token) = corpus
    md = rel_api.auth("bob")
    flipped = actions_token[:-2] + ("A" if actions_token[-2] != "A" else "B") + actions_token[-1]
    cases: list[Any] = [
        actions_pb2.ListActionsRequest(workspace_id=str(other), page_token=actions_token),
        actions_pb2.ListActionsRequest(
            workspace_id=str(ws), page_token=actions_token, action_type="set_budget"
        ),
        actions_pb2.ListActionsRequest(
            workspace_id=str(ws), page_token=actions_token, actor_subject="bob"
        ),
        actions_pb2.ListActionsRequest(workspace_id=str(ws), page_token=flipped),
        actions_pb2.ListActionsRequest(workspace_id=str(ws), page_token=agents_token),
        actions_pb2.ListAgentsRequest(workspace_id=str(other), page_token=agents_token),
        actions_pb2.ListAgentsRequest(
            workspace_id=str(ws), page_token=agents_token, department_id="support"
        ),
        actions_pb2.ListAgentsRequest(workspace_id=str(ws), page_token=actions_token),
    ]
    for request in cases:
        method = (
            rel_api.stub.ListActions
            if isinstance(request, actions_pb2.ListActionsRequest)
            else rel_api.stub.ListAgents
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(request, metadata=md, timeout=5)
        info = details(caught.value)
        assert (info.code, info.reason) == (C.INVALID_ARGUMENT, "INVALID_ARGUMENT"), request
        assert "page_token" in info.field_violations, info
        counters.record("bad_inputs")
    # The genuine tokens work where they belong.
    page = await rel_api.stub.ListActions(
        actions_pb2.ListActionsRequest(workspace_id=str(ws), page_size=1, page_token=actions_token),
        metadata=md,
        timeout=5,
    )
    assert len(page.actions) == 1
