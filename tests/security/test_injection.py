"""SQL injection strings in every string field change nothing but what the request asks."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from fleetward.actions.v1 import actions_pb2
from fleetward.policy.v1 import policy_pb2, policy_pb2_grpc
from google.protobuf import timestamp_pb2

from tests.actions.helpers import Api, execute_request
from tests.conftest import Secrets
from tests.reliability import counters
from tests.reliability.harness import assert_invariants, create_workspace
from tests.security.badinput import SQL

C = grpc.StatusCode
DATABASE_SHAPE = """
SELECT (SELECT count(*) FROM agents) AS agents, (SELECT count(*) FROM workspaces) AS workspaces,
       (SELECT count(*) FROM departments) AS departments,
       (SELECT count(*) FROM agents WHERE status = 'paused') AS paused,
       (SELECT count(*) FROM pg_tables WHERE schemaname = 'public') AS tables"""


async def code_of(call: object) -> grpc.StatusCode:
    """The status code of an awaited call."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return C.OK


Metadata = tuple[tuple[str, str], ...]


def _start_calls_with_evil_ids(api: Api, w: str, md: Metadata, evil: str) -> dict[str, Any]:
    """Calls with ``evil`` where an id or a page token belongs, all started at once."""
    s = api.stub
    return {
        "target_id": s.Execute(execute_request(w, "pause_agent", target=evil), metadata=md),
        "request_id": s.Execute(
            execute_request(w, "pause_agent", target="eng-code-1", request_id=evil), metadata=md
        ),
        "workspace_id": s.Execute(
            execute_request(evil, "pause_agent", target="eng-code-1"), metadata=md
        ),
        "rollback.action_id": s.Rollback(
            actions_pb2.RollbackRequest(
                workspace_id=w, action_id=evil, reason="undo", request_id="x1"
            ),
            metadata=md,
        ),
        "GetAction": s.GetAction(
            actions_pb2.GetActionRequest(workspace_id=w, action_id=evil), metadata=md
        ),
        "ListActionEvents": s.ListActionEvents(
            actions_pb2.ListActionEventsRequest(workspace_id=w, action_id=evil), metadata=md
        ),
        "GetAgent": s.GetAgent(
            actions_pb2.GetAgentRequest(workspace_id=w, agent_id=evil), metadata=md
        ),
        "ListAgents.page_token": s.ListAgents(
            actions_pb2.ListAgentsRequest(workspace_id=w, page_token=evil), metadata=md
        ),
        "ListActions.page_token": s.ListActions(
            actions_pb2.ListActionsRequest(workspace_id=w, page_token=evil), metadata=md
        ),
    }


async def _assert_free_text_filters_match_nothing(
    api: Api, w: str, md: Metadata, evil: str
) -> None:
    """Free-text filters are data: they match nothing and change nothing."""
    s = api.stub
    for request in (
        actions_pb2.ListActionsRequest(workspace_id=w, actor_subject=evil),
        actions_pb2.ListActionsRequest(workspace_id=w, target_id=evil),
        actions_pb2.ListActionsRequest(
            workspace_id=w, action_type="pause_agent", created_after=timestamp_pb2.Timestamp()
        ),
    ):
        try:
            page = await s.ListActions(request, metadata=md)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        else:
            code = C.NOT_FOUND if page.actions else C.OK
        assert code in (C.OK, C.INVALID_ARGUMENT)  # never a match (NOT_FOUND stands for one)
    assert await code_of(
        s.ListAgents(actions_pb2.ListAgentsRequest(workspace_id=w, department_id=evil), metadata=md)
    ) in (C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND)


async def _assert_reason_stored_byte_for_byte(
    api: Api, pool: asyncpg.Pool, ws: uuid.UUID, evil: str
) -> None:
    """The reason is free text: stored byte for byte, one agent paused, nothing else."""
    reason = f"{evil} {evil}"
    done = await api.execute("alice", ws, "pause_agent", target="eng-code-1", reason=reason)
    stored = await pool.fetchval(
        "SELECT reason FROM action_audit_log WHERE action_id = $1", uuid.UUID(done.action_id)
    )
    assert stored == reason


async def _assert_policy_check_never_allows(
    policy_target: str, secrets: Secrets, w: str, evil: str
) -> None:
    """``evil`` as the subject, action or resource of a Check: refused or denied."""
    async with grpc.aio.insecure_channel(policy_target) as channel:
        policy = policy_pb2_grpc.PolicyServiceStub(channel)
        svc = (("authorization", f"Bearer {secrets.service_token()}"),)
        for field in ("subject", "action", "resource"):
            fields: dict[str, Any] = {"subject": "bob", "workspace_id": w}
            fields["action"] = "actions:read"
            fields["resource"] = "fleet"
            fields[field] = evil
            try:
                reply = await policy.Check(policy_pb2.CheckRequest(**fields), metadata=svc)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
            else:
                code = C.PERMISSION_DENIED if reply.allowed else C.OK
            assert code in (C.OK, C.INVALID_ARGUMENT), field  # refused or denied, never allowed


@pytest.mark.parametrize("evil", SQL)
async def test_injection_strings_in_every_field_change_nothing(
    rel_api: Api,
    pool: asyncpg.Pool,
    rel_policy_target: str,
    dev_secrets: Secrets,
    evil: str,
) -> None:
    ws = await create_workspace(pool)
    shape = await pool.fetchrow(DATABASE_SHAPE)
    md = rel_api.auth("alice")
    w = str(ws)
    refused = _start_calls_with_evil_ids(rel_api, w, md, evil)
    for name, call in refused.items():
        assert await code_of(call) == C.INVALID_ARGUMENT, name
    await _assert_free_text_filters_match_nothing(rel_api, w, md, evil)
    await _assert_reason_stored_byte_for_byte(rel_api, pool, ws, evil)
    await _assert_policy_check_never_allows(rel_policy_target, dev_secrets, w, evil)
    counters.record("bad_inputs", len(refused) + 7)
    after = await pool.fetchrow(DATABASE_SHAPE)
    assert after is not None
    assert shape is not None
    assert dict(after) == {**dict(shape), "paused": shape["paused"] + 1}
    await assert_invariants(pool, [ws])
