"""A user of workspace A can do nothing in workspace B, nor learn whether its ids exist
(docs/architecture.md §4, §5.1).

frank is an admin of HOME_A only. Every RPC against workspace B must answer
PERMISSION_DENIED with the same status (message, ErrorInfo, metadata, details) whether
the workspace, the agent, the department or the action exists or not, and write nothing.
Denials of callers who hold a role in the workspace are audited as ``denied`` rows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2

from tests.actions.helpers import Api, execute_request
from tests.reliability import counters
from tests.reliability.harness import assert_invariants, create_workspace, writes

C = grpc.StatusCode
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def fingerprint(exc: grpc.aio.AioRpcError, ids: list[str]) -> tuple[Any, ...]:
    """Everything the caller sees, with the ids it sent itself replaced by a placeholder."""

    def scrub(value: str | bytes) -> str | bytes:
        for ident in ids:
            if isinstance(value, bytes):
                value = value.replace(ident.encode(), b"<id>")
            else:
                value = value.replace(ident, "<id>")
        return value

    trailers = tuple(
        (k, scrub(v)) for k, v in (exc.trailing_metadata() or ()) if k != "x-request-id"
    )
    initial = tuple((k, scrub(v)) for k, v in (exc.initial_metadata() or ()))
    return exc.code(), scrub(exc.details() or ""), trailers, initial


async def status_of(api: Api, call: Callable[[Any, Any], Any]) -> grpc.aio.AioRpcError:
    """The error ``call(stub, metadata)`` ends with, as frank."""
    md = api.auth("frank")
    try:
        result = call(api.stub, md)
        if isinstance(result, grpc.aio.UnaryStreamCall):
            async for _ in result:
                pass
        else:
            await result
    except grpc.aio.AioRpcError as exc:
        counters.record("requests")
        return exc
    raise AssertionError("frank was let in")


def rpcs(ws: str, action: str, agent: str, dept: str) -> dict[str, Callable[[Any, Any], Any]]:
    """Every RPC that names something in workspace ``ws``."""
    t = 5
    return {
        "GetAction": lambda s, m: s.GetAction(
            actions_pb2.GetActionRequest(workspace_id=ws, action_id=action), metadata=m, timeout=t
        ),
        "ListActions": lambda s, m: s.ListActions(
            actions_pb2.ListActionsRequest(workspace_id=ws, target_id=agent), metadata=m, timeout=t
        ),
        "ListActionEvents": lambda s, m: s.ListActionEvents(
            actions_pb2.ListActionEventsRequest(workspace_id=ws, action_id=action),
            metadata=m,
            timeout=t,
        ),
        "GetAgent": lambda s, m: s.GetAgent(
            actions_pb2.GetAgentRequest(workspace_id=ws, agent_id=agent), metadata=m, timeout=t
        ),
        "ListAgents": lambda s, m: s.ListAgents(
            actions_pb2.ListAgentsRequest(workspace_id=ws, department_id=dept),
            metadata=m,
            timeout=t,
        ),
        "WatchActions": lambda s, m: s.WatchActions(
            actions_pb2.WatchActionsRequest(workspace_id=ws), metadata=m, timeout=t
        ),
        "WatchActions(live_only)": lambda s, m: s.WatchActions(
            actions_pb2.WatchActionsRequest(workspace_id=ws, live_only=True), metadata=m, timeout=t
        ),
        "Execute(agent)": lambda s, m: s.Execute(
            execute_request(ws, "pause_agent", target=agent, request_id="same-key"),
            metadata=m,
            timeout=t,
        ),
        "Execute(department)": lambda s, m: s.Execute(
            execute_request(
                ws, "pause_agent", scope="department", target=dept, request_id="same-key"
            ),
            metadata=m,
            timeout=t,
        ),
        "Execute(fleet)": lambda s, m: s.Execute(
            execute_request(ws, "pause_agent", scope="fleet", request_id="same-key"),
            metadata=m,
            timeout=t,
        ),
        "Rollback": lambda s, m: s.Rollback(
            actions_pb2.RollbackRequest(
                workspace_id=ws, action_id=action, reason="undo it", request_id="same-key"
            ),
            metadata=m,
            timeout=t,
        ),
    }


@pytest.mark.parametrize(
    "rpc",
    [
        "GetAction",
        "ListActions",
        "ListActionEvents",
        "GetAgent",
        "ListAgents",
        "WatchActions",
        "WatchActions(live_only)",
        "Execute(agent)",
        "Execute(department)",
        "Execute(fleet)",
        "Rollback",
    ],
)
async def test_a_foreign_user_is_denied_identically_whether_or_not_the_ids_exist(
    rel_api: Api, pool: asyncpg.Pool, home_a: uuid.UUID, rpc: str
) -> None:
    ws_b = await create_workspace(pool)
    done = await rel_api.execute("alice", ws_b, "pause_agent", target="eng-code-1")
    before = await writes(pool, [ws_b])
    frank_rows = await pool.fetchval(
        "SELECT count(*) FROM action_audit_log WHERE actor_user_id = 'frank'"
    )
    ghost_ws, ghost_action = str(uuid.uuid4()), str(uuid.uuid4())
    variants = {
        "existing": (str(ws_b), done.action_id, "eng-code-1", "support"),
        "unknown ids": (str(ws_b), ghost_action, "ghost-agent", "ghost-dept"),
        "unknown workspace": (ghost_ws, ghost_action, "eng-code-1", "support"),
    }
    seen = {}
    for label, (ws, action, agent, dept) in variants.items():
        exc = await status_of(rel_api, rpcs(ws, action, agent, dept)[rpc])
        assert exc.code() == C.PERMISSION_DENIED, (label, exc.code(), exc.details())
        seen[label] = fingerprint(exc, [ws, action, agent, dept])
    assert seen["existing"] == seen["unknown ids"] == seen["unknown workspace"]
    assert await writes(pool, [ws_b]) == before
    assert (
        await pool.fetchval("SELECT count(*) FROM action_audit_log WHERE actor_user_id = 'frank'")
        == frank_rows
    )
    await assert_invariants(pool, [ws_b])


async def test_frank_is_at_home_in_his_own_workspace(rel_api: Api, home_a: uuid.UUID) -> None:
    agent = await rel_api.stub.GetAgent(
        actions_pb2.GetAgentRequest(workspace_id=str(home_a), agent_id="sup-chat-1"),
        metadata=rel_api.auth("frank"),
        timeout=5,
    )
    assert agent.agent_id == "sup-chat-1"


async def test_denials_of_callers_with_a_role_are_audited_and_of_strangers_are_not(
    rel_api: Api, pool: asyncpg.Pool
) -> None:
    ws = await create_workspace(pool)
    done = await rel_api.execute("alice", ws, "pause_agent", target="eng-code-1")
    for subject in ("carol", "mallory"):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await rel_api.execute(subject, ws, "pause_agent", target="eng-code-2")
        assert denied.value.code() == C.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rel_api.rollback(subject, ws, done.action_id)
        assert refused.value.code() == C.PERMISSION_DENIED
    rows = await pool.fetch(
        "SELECT actor_user_id, action_type, status, policy_version, decision_id, actor_role "
        "FROM action_audit_log WHERE workspace_id = $1 AND status = 'denied' "
        "ORDER BY action_type",
        ws,
    )
    assert [(r["actor_user_id"], r["action_type"]) for r in rows] == [
        ("carol", "pause_agent"),
        ("carol", "rollback"),
    ]
    assert all(r["policy_version"] and r["decision_id"] and r["actor_role"] for r in rows)
    events = await pool.fetchval(
        "SELECT count(*) FROM action_events WHERE workspace_id = $1 AND event_type = "
        "'action.denied'",
        ws,
    )
    assert events == 2
    await assert_invariants(pool, [ws])
