"""Scenarios through the real services: Execute, Check, ListActions and a fleet pause."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import grpc
from fleetward.actions.v1 import actions_pb2, actions_pb2_grpc
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc

from bench.policygen import PERMISSIONS, GeneratedPolicy
from services.actions.store.history import page_statement


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata for ``token``."""
    return (("authorization", f"Bearer {token}"),)


def check_items(policy: GeneratedPolicy, count: int, seed: int) -> list[tuple[str, ...]]:
    """Check requests: bound (subject, workspace) pairs from the g lines, and strangers."""
    rng = random.Random(seed)
    bound = [
        (fields[1], fields[3])
        for fields in (line.split(", ") for line in policy.lines)
        if fields[0] == "g" and fields[3] != "*" and fields[1].startswith("user-")
    ]
    items: list[tuple[str, ...]] = []
    for _ in range(count):
        if bound and rng.random() < 0.8:
            subject, workspace = rng.choice(bound)
        else:
            subject, workspace = rng.choice(policy.subjects), rng.choice(policy.workspaces)
        department, agent = rng.choice(policy.departments), rng.choice(policy.agents)
        resource = rng.choice(
            [
                "fleet",
                f"fleet/departments/{department}",
                f"fleet/departments/{department}/agents/{agent}",
            ]
        )
        items.append((subject, workspace, rng.choice(PERMISSIONS), resource))
    return items


async def check_latencies_ms(
    target: str, token: str, items: Sequence[tuple[str, ...]], calls: int
) -> tuple[list[float], float]:
    """Sequential Check latencies, and the share of allowed answers."""
    rng = random.Random(3)
    allowed = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = policy_pb2_grpc.PolicyServiceStub(channel)
        times = []
        for i in range(calls + 50):
            subject, workspace, action, resource = rng.choice(items)
            request = policy_pb2.CheckRequest(
                subject=subject, workspace_id=workspace, action=action, resource=resource
            )
            begun = time.perf_counter()
            reply = await stub.Check(request, metadata=bearer(token))
            if i >= 50:
                times.append((time.perf_counter() - begun) * 1000)
                allowed += reply.allowed
    return times, allowed / calls


def pause_request(workspace: uuid.UUID, scope: actions_pb2.Scope.ValueType, target_id: str) -> Any:
    """An ExecuteRequest pausing ``target_id`` for 30 minutes, with a fresh request id."""
    return actions_pb2.ExecuteRequest(
        workspace_id=str(workspace),
        scope=scope,
        target_id=target_id,
        reason="bench",
        request_id=uuid.uuid4().hex,
        pause_agent=actions_pb2.PauseAgentParams(duration_minutes=30),
    )


async def execute_latencies_ms(
    target: str, token: str, workspace: uuid.UUID, agents: int, calls: int
) -> list[float]:
    """Sequential Execute(pause_agent) at agent scope on random agents of one workspace."""
    rng = random.Random(4)
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = actions_pb2_grpc.ActionServiceStub(channel)
        times = []
        for i in range(calls + 20):
            request = pause_request(
                workspace, actions_pb2.SCOPE_AGENT, f"agent-{rng.randrange(agents)}"
            )
            begun = time.perf_counter()
            await stub.Execute(request, metadata=bearer(token))
            if i >= 20:
                times.append((time.perf_counter() - begun) * 1000)
    return times


async def fleet_pause_s(target: str, token: str, workspace: uuid.UUID, rounds: int) -> list[float]:
    """Seconds per fleet-scope pause of every agent of ``workspace`` (resumed in between)."""
    durations = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = actions_pb2_grpc.ActionServiceStub(channel)
        for _ in range(rounds):
            request = pause_request(workspace, actions_pb2.SCOPE_FLEET, "")
            begun = time.perf_counter()
            action = await stub.Execute(request, metadata=bearer(token), timeout=120)
            durations.append(time.perf_counter() - begun)
            if action.result["count"] == 0:
                raise RuntimeError("the fleet pause touched no agent")
            resume = actions_pb2.ExecuteRequest(
                workspace_id=str(workspace),
                scope=actions_pb2.SCOPE_FLEET,
                reason="bench",
                request_id=uuid.uuid4().hex,
                resume_agent=actions_pb2.ResumeAgentParams(),
            )
            await stub.Execute(resume, metadata=bearer(token), timeout=120)
    return durations


async def check_resources_ms(
    target: str,
    token: str,
    subject: str,
    workspace: str,
    resources: Sequence[str],
    rounds: int,
) -> list[float]:
    """Milliseconds per CheckResources of ``resources`` (after one warm-up call)."""
    request = policy_pb2.CheckResourcesRequest(
        subject=subject, workspace_id=workspace, action="actions:pause_agent", resources=resources
    )
    times = []
    options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub: Any = policy_pb2_grpc.PolicyServiceStub(channel)
        for i in range(rounds + 1):
            begun = time.perf_counter()
            reply = await stub.CheckResources(request, metadata=bearer(token), timeout=60)
            if i:
                times.append((time.perf_counter() - begun) * 1000)
            if reply.allowed_count + len(reply.denied) != len(resources):
                raise RuntimeError("CheckResources did not account for every resource")
    return times


def agent_paths(policy: GeneratedPolicy, count: int) -> list[str]:
    """``count`` distinct agent paths spread over the policy's departments."""
    departments = policy.departments
    return [
        f"fleet/departments/{departments[i % len(departments)]}/agents/agent-{i}"
        for i in range(count)
    ]


LIST_WARMUP = 10  # unrecorded pages before list_actions_latencies_ms measures


async def list_actions_latencies_ms(
    target: str, token: str, workspace: uuid.UUID, targets: int, calls: int, by: str
) -> list[float]:
    """Sequential 50-row ListActions pages filtered by a random target id or action type."""
    rng = random.Random(5)
    types = ["pause_agent", "resume_agent", "set_budget", "restart_agent"]
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = actions_pb2_grpc.ActionServiceStub(channel)
        times = []
        for i in range(calls + LIST_WARMUP):
            request = actions_pb2.ListActionsRequest(workspace_id=str(workspace), page_size=50)
            if by == "target":
                request.target_id = f"agent-{rng.randrange(targets)}"
            else:
                request.action_type = rng.choice(types)
            begun = time.perf_counter()
            reply = await stub.ListActions(request, metadata=bearer(token))
            if i >= LIST_WARMUP:
                times.append((time.perf_counter() - begun) * 1000)
            if len(reply.actions) != 50:
                raise RuntimeError(f"a ListActions page had {len(reply.actions)} rows")
    return times


async def list_actions_plan(dsn: str, workspace: uuid.UUID, by: str) -> str:
    """EXPLAIN (ANALYZE) of the service's ListActions statement for one filtered page."""
    filters = {"target_id": "agent-7"} if by == "target" else {"action_type": "pause_agent"}
    sql, args = page_statement(workspace, filters, None, 51)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + sql, *args)
    finally:
        await conn.close()
    return "\n".join(row[0] for row in rows)
