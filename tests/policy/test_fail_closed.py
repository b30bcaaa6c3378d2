"""Fail-closed: an evaluation error is a deny with EVALUATION_ERROR, never an RPC error."""

from __future__ import annotations

import dataclasses

from fleetward.policy.v1 import policy_pb2

from services.policy.enforcer import build_enforcer
from services.policy.engine import CasbinDecider, Reason, decide_safely
from services.policy.files import read_policy_dir
from services.policy.validate import validate
from tests.policy.conftest import AGENT, POLICIES, RunningPolicy

R = policy_pb2.DecisionReason


def _decider_whose_matcher_raises() -> CasbinDecider:
    files = read_policy_dir(POLICIES)
    broken = files.model_text.replace(
        "globMatch(r.obj, p.obj)", "globMatch(r.obj, p.obj) && noSuchFunction(r.obj)"
    )
    assert broken != files.model_text
    files = dataclasses.replace(files, model_text=broken)
    lines = validate(files).lines
    return CasbinDecider(build_enforcer(files, lines), lines)


def test_decide_safely_turns_an_exception_into_a_deny() -> None:
    decision = decide_safely(
        _decider_whose_matcher_raises(),
        "bob",
        "ac3e0000-0000-4000-8000-000000000001",
        "actions:pause_agent",
        AGENT,
        explain=True,
    )
    assert not decision.allowed
    assert decision.reason is Reason.EVALUATION_ERROR


async def test_evaluation_error_is_a_deny_through_the_server(demo: RunningPolicy) -> None:
    state = demo.built.reloader.state
    assert state.snapshot is not None
    good = state.snapshot
    state.snapshot = dataclasses.replace(good, decider=_decider_whose_matcher_raises())
    try:
        reply = await demo.check("alice", "actions:pause_agent", AGENT, explain=True)
        assert not reply.allowed
        assert reply.reason == R.DECISION_REASON_EVALUATION_ERROR
        assert reply.policy_version == good.version
        assert reply.decision_id
        batch = await demo.stub.BatchCheck(
            policy_pb2.BatchCheckRequest(
                checks=[
                    policy_pb2.CheckRequest(
                        subject="alice",
                        workspace_id="ac3e0000-0000-4000-8000-000000000001",
                        action="actions:read",
                        resource="fleet",
                    )
                ]
            ),
            metadata=demo.metadata,
        )
        assert batch.results[0].reason == R.DECISION_REASON_EVALUATION_ERROR
    finally:
        state.snapshot = good
