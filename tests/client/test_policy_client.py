"""Both policy clients against the real policy service."""

from __future__ import annotations

import uuid

import pytest
from fleetward.client import Unauthenticated
from fleetward.policy.v1 import policy_pb2

from tests.client.servers import Either, policy_client

WS = str(uuid.uuid4())


async def test_check_allows_and_explains(policy: Either) -> None:
    decision = await policy.call(
        "check",
        subject="bob",
        workspace_id=WS,
        action="actions:pause_agent",
        resource="fleet/departments/support/agents/sup-chat-1",
        explain=True,
    )
    assert decision.allowed
    assert decision.reason == policy_pb2.DECISION_REASON_ALLOWED
    assert "operator" in decision.roles
    assert decision.matched_rule


async def test_batch_check_answers_in_order_with_one_version(policy: Either) -> None:
    checks = [
        policy_pb2.CheckRequest(
            subject=s,
            workspace_id=WS,
            action="actions:restart_agent",
            resource="fleet/departments/engineering/agents/eng-code-1",
        )
        for s in ("alice", "carol")
    ]
    reply = await policy.call("batch_check", checks=checks)
    assert [r.allowed for r in reply.results] == [True, False]
    assert {r.policy_version for r in reply.results} == {reply.policy_version}


async def test_get_policy_info_reports_the_served_policy(policy: Either) -> None:
    info = await policy.call("get_policy_info")
    assert info.policy_version
    assert info.rule_count > 0
    assert info.last_reload_error == ""


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_user_token_is_refused(client_policy_target: str, sync: bool) -> None:
    client = policy_client(client_policy_target, "not-a-service-token", sync=sync)
    try:
        with pytest.raises(Unauthenticated):
            await client.call("get_policy_info")
    finally:
        await client.close()
