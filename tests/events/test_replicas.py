"""Two action-service processes on one database (docs/architecture.md §10), and both
services' metrics endpoints.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from services.actions.scheduler import SUBJECT
from tests.actions.helpers import Api
from tests.conftest import NewWorkspace, Secrets
from tests.events.processes import (
    ServiceProcess,
    action_env,
    action_process,
    policy_env,
    policy_process,
)

EXPIRE = """
UPDATE agents SET paused_until = now() - interval '1 minute'
WHERE workspace_id = $1 AND status = 'paused'"""


@dataclass
class Cluster:
    """A policy process and two action-service replicas with fast background jobs."""

    policy: ServiceProcess
    replicas: tuple[ServiceProcess, ServiceProcess]


@pytest.fixture(scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    events_policy_dir: Path,
    database_dsn: str,
    dev_secrets: Secrets,
) -> AsyncIterator[Cluster]:
    """Started processes (SIGTERM at the end)."""
    logs = tmp_path_factory.mktemp("replicas")
    policy = policy_process(logs)
    # The test catalog's restart_agent has an external effect: recorded in two steps.
    replicas = (
        action_process(logs, "a", test_catalog=True),
        action_process(logs, "b", test_catalog=True),
    )
    started: list[ServiceProcess] = []
    try:
        await policy.start(policy_env(policy, events_policy_dir, dev_secrets))
        started.append(policy)
        for proc in replicas:
            env = action_env(
                proc,
                database_dsn,
                policy.target,
                dev_secrets,
                FLEETWARD_SCHEDULER_INTERVAL_S="0.2",
                FLEETWARD_RECOVERY_INTERVAL_S="0.2",
            )
            started.append(proc)
            await proc.start(env)
        yield Cluster(policy, replicas)
    finally:
        for proc in reversed(started):
            await proc.stop()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text exposition, or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


async def poll(what: str, probe: object, limit_s: float = 30) -> None:
    """Poll the async ``probe()`` until it returns True."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await probe():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_two_replicas_schedulers_resume_each_agent_once(
    cluster: Cluster, dev_secrets: Secrets, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace(agents_per_department=6)
    async with (
        grpc.aio.insecure_channel(cluster.replicas[0].target) as ch_a,
        grpc.aio.insecure_channel(cluster.replicas[1].target) as ch_b,
    ):
        api_a, api_b = Api(ch_a, dev_secrets), Api(ch_b, dev_secrets)
        pauses = [
            await api_a.execute("bob", ws.id, "pause_agent", target=agent)
            for agent in ws.agents_in("engineering")
        ]
        pauses.append(
            await api_b.execute("bob", ws.id, "pause_agent", scope="department", target="support")
        )
    await pool.execute(EXPIRE, ws.id)

    async def all_active() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM agents WHERE workspace_id = $1 AND status = 'active'", ws.id
        )
        return bool(n == len(ws.agents))

    await poll("both schedulers to resume every agent", all_active)
    resumes = await pool.fetch(
        "SELECT action_id, status FROM action_audit_log WHERE workspace_id = $1 "
        "AND actor_user_id = $2",
        ws.id,
        SUBJECT,
    )
    assert len(resumes) == len(pauses)  # one per expired pause action
    assert {r["status"] for r in resumes} == {"completed"}
    per_agent = await pool.fetch(
        "SELECT t.target_key, count(*) AS n FROM action_targets t "
        "JOIN action_audit_log a USING (action_id) "
        "WHERE a.workspace_id = $1 AND a.actor_user_id = $2 GROUP BY t.target_key",
        ws.id,
        SUBJECT,
    )
    assert {r["target_key"]: r["n"] for r in per_agent} == dict.fromkeys(ws.agents, 1)


async def test_recovery_of_one_replica_never_touches_the_others_live_action(
    cluster: Cluster, dev_secrets: Secrets, pool: asyncpg.Pool, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    runner, other = cluster.replicas
    request_id = uuid.uuid4().hex

    def recovery_runs() -> float:
        text = other.scrape()
        return sample(text, "fleetward_background_job_runs_total", job="recovery", result="ok") or 0

    async with grpc.aio.insecure_channel(runner.target) as channel, pool.acquire() as blocker:
        api = Api(channel, dev_secrets)
        txn = blocker.transaction()
        await txn.start()
        await blocker.execute(
            "SELECT 1 FROM agents WHERE workspace_id = $1 AND agent_id = 'eng-code-1' FOR UPDATE",
            ws.id,
        )
        # An external effect (the test catalog's restart_agent) commits its pending row first.
        call = asyncio.create_task(
            api.execute(
                "alice",
                ws.id,
                "restart_agent",
                target="eng-code-1",
                request_id=request_id,
                deadline=60,
            )
        )

        async def pending_long_enough() -> bool:
            # Older than recovery's minimum age (1 s): a candidate for the other replica.
            return bool(
                await pool.fetchval(
                    "SELECT status = 'pending' AND created_at < clock_timestamp() - interval "
                    "'1.2 s' FROM action_audit_log WHERE workspace_id = $1 AND request_id = $2",
                    ws.id,
                    request_id,
                )
            )

        await poll("a live action old enough for recovery", pending_long_enough)
        seen = await asyncio.to_thread(recovery_runs)

        async def three_more_runs() -> bool:
            return await asyncio.to_thread(recovery_runs) >= seen + 3

        await poll("three recovery runs of the other replica", three_more_runs)
        status = await pool.fetchval(
            "SELECT status FROM action_audit_log WHERE workspace_id = $1 AND request_id = $2",
            ws.id,
            request_id,
        )
        assert status == "pending"
        await txn.rollback()
        done = await call
    assert done.status == actions_pb2.ACTION_STATUS_COMPLETED


async def test_metrics_endpoints_expose_the_named_series(
    cluster: Cluster, dev_secrets: Secrets, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    replica = cluster.replicas[0]
    async with grpc.aio.insecure_channel(replica.target) as channel:
        api = Api(channel, dev_secrets)
        await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
        with pytest.raises(grpc.aio.AioRpcError):
            await api.execute("carol", ws.id, "pause_agent", target="eng-code-2")
        watch = api.stub.WatchActions(
            actions_pb2.WatchActionsRequest(workspace_id=str(ws.id)), metadata=api.auth("carol")
        )
        await watch.read()
        actions_text = await asyncio.to_thread(replica.scrape)
        watch.cancel()
    execute = "/fleetward.actions.v1.ActionService/Execute"
    assert sample(actions_text, "fleetward_rpc_requests_total", method=execute, code="OK")
    assert sample(
        actions_text, "fleetward_rpc_requests_total", method=execute, code="PERMISSION_DENIED"
    )
    assert sample(actions_text, "fleetward_rpc_latency_seconds_count", method=execute)
    assert sample(
        actions_text,
        "fleetward_action_outcomes_total",
        action_type="pause_agent",
        outcome="completed",
    )
    assert sample(
        actions_text, "fleetward_action_outcomes_total", action_type="pause_agent", outcome="denied"
    )
    assert sample(actions_text, "fleetward_db_pool_connections", pool="main", state="open")
    assert sample(actions_text, "fleetward_db_pool_connections", pool="main", state="max") == 20
    assert sample(actions_text, "fleetward_db_pool_connections", pool="watch", state="max") == 4
    assert sample(actions_text, "fleetward_watch_streams_open") == 1
    assert sample(actions_text, "fleetward_background_job_runs_total", job="scheduler", result="ok")

    policy_text = await asyncio.to_thread(cluster.policy.scrape)
    check = "/fleetward.policy.v1.PolicyService/Check"
    assert sample(policy_text, "fleetward_rpc_requests_total", method=check, code="OK")
    assert sample(policy_text, "fleetward_rpc_latency_seconds_count", method=check)
    assert sample(policy_text, "fleetward_policy_decisions_total", result="allow")
    assert sample(policy_text, "fleetward_policy_decisions_total", result="deny")
    assert sample(policy_text, "fleetward_policy_reloads_total", result="success")
    assert sample(policy_text, "fleetward_policy_reloads_total", result="failure") == 0
    info = re.search(r'fleetward_policy_info\{policy_version="([0-9a-f]+)"\} 1.0', policy_text)
    assert info is not None


async def test_logs_are_json_lines_with_context_and_no_token(
    cluster: Cluster, dev_secrets: Secrets, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    replica = cluster.replicas[1]
    request_id = uuid.uuid4().hex
    async with grpc.aio.insecure_channel(replica.target) as channel:
        api = Api(channel, dev_secrets)
        action = await api.execute(
            "bob", ws.id, "pause_agent", target="sup-chat-1", request_id=request_id
        )
        token = api.auth("bob")[0][1].split()[1]

    async def logged() -> bool:
        return request_id in replica.log.read_text()

    await poll("the log lines of the call", logged)
    lines = [json.loads(line) for line in replica.log.read_text().splitlines() if line]
    mine = [line for line in lines if line.get("request_id") == request_id]
    rpc = next(line for line in mine if line.get("event") == "rpc")
    assert rpc["method"] == "/fleetward.actions.v1.ActionService/Execute"
    assert rpc["code"] == "OK"
    assert rpc["latency_ms"] > 0
    assert rpc["workspace_id"] == str(ws.id)
    done = next(line for line in mine if line.get("event") == "action.completed")
    assert done["action_id"] == action.action_id
    assert done["decision_id"] == action.decision_id
    assert done["subject"] == "bob"
    assert done["service"] == "actions"
    assert token not in replica.log.read_text()
    assert "eyJ" not in replica.log.read_text()
