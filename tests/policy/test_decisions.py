"""Decisions of the demo policy through the real gRPC server, with a real service token."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fleetward.policy.v1 import policy_pb2

from services.policy.engine import CasbinDecider
from tests.policy.conftest import (
    AGENT,
    DEMO_WS,
    DEPARTMENT,
    OTHER_WS,
    RunningPolicy,
    StartPolicy,
)

R = policy_pb2.DecisionReason
SCOPES = {"fleet": "fleet", "department": DEPARTMENT, "agent": AGENT}
ACTIONS = ["read", "rollback", "pause_agent", "resume_agent", "set_budget", "restart_agent"]
# What each demo role may do, written out independently of policies/tests/demo.yaml.
ALLOWED: dict[str, set[tuple[str, str]]] = {
    "alice": {(a, s) for a in ACTIONS for s in SCOPES},
    "bob": {(a, s) for a in ("read", "rollback") for s in SCOPES}
    | {(a, s) for a in ("pause_agent", "resume_agent") for s in ("department", "agent")},
    "carol": {("read", s) for s in SCOPES},
    "dana": {(a, s) for a in ("read", "set_budget") for s in SCOPES},
}
ROLES = {
    "alice": ["admin"],
    "bob": ["operator", "viewer"],
    "carol": ["viewer"],
    "dana": ["budget_admin", "viewer"],
}
MATRIX = [(u, a, s) for u in ALLOWED for a in ACTIONS for s in SCOPES]


@pytest.mark.parametrize(("subject", "action", "scope"), MATRIX)
async def test_demo_role_action_scope(
    demo: RunningPolicy, subject: str, action: str, scope: str
) -> None:
    reply = await demo.check(subject, f"actions:{action}", SCOPES[scope])
    expected = (action, scope) in ALLOWED[subject]
    assert reply.allowed is expected
    assert reply.reason == (
        R.DECISION_REASON_ALLOWED if expected else R.DECISION_REASON_NO_MATCHING_RULE
    )
    assert list(reply.roles) == ROLES[subject]
    assert len(reply.policy_version) == 12
    assert uuid.UUID(reply.decision_id).version == 4


async def test_explicit_deny_beats_allow_and_is_explained(demo: RunningPolicy) -> None:
    review_agent = "fleet/departments/engineering/agents/eng-review-1"
    reply = await demo.check("bob", "actions:pause_agent", review_agent, explain=True)
    assert not reply.allowed
    assert reply.reason == R.DECISION_REASON_EXPLICIT_DENY
    assert reply.matched_rule == (
        "p, operator, *, fleet/departments/engineering/agents/eng-review-*, "
        "actions:pause_agent, deny"
    )
    # The same operator may resume it and pause its neighbour; the admin is unaffected.
    assert (await demo.check("bob", "actions:resume_agent", review_agent)).allowed
    assert (await demo.check("bob", "actions:pause_agent", AGENT)).allowed
    assert (await demo.check("alice", "actions:pause_agent", review_agent)).allowed


async def test_matched_rule_only_with_explain(demo: RunningPolicy) -> None:
    plain = await demo.check("bob", "actions:pause_agent", AGENT)
    explained = await demo.check("bob", "actions:pause_agent", AGENT, explain=True)
    assert plain.matched_rule == ""
    assert explained.matched_rule == (
        "p, operator, *, fleet/departments/**, actions:pause_agent, allow"
    )
    assert plain.decision_id != explained.decision_id


async def test_platform_wide_binding_holds_in_every_workspace(demo: RunningPolicy) -> None:
    for workspace in (DEMO_WS, OTHER_WS, str(uuid.uuid4())):
        reply = await demo.check("sre-oncall", "actions:read", AGENT, workspace_id=workspace)
        assert reply.allowed, workspace
        assert list(reply.roles) == ["viewer"]
    denied = await demo.check("sre-oncall", "actions:pause_agent", AGENT, workspace_id=OTHER_WS)
    assert denied.reason == R.DECISION_REASON_NO_MATCHING_RULE


async def test_bindings_do_not_leak_into_other_workspaces(demo: RunningPolicy) -> None:
    for subject in ("alice", "bob", "carol", "dana"):
        reply = await demo.check(subject, "actions:read", "fleet", workspace_id=OTHER_WS)
        assert not reply.allowed
        assert reply.reason == R.DECISION_REASON_UNKNOWN_WORKSPACE
        assert list(reply.roles) == []


async def test_unknown_subject_and_role_names_get_nothing(demo: RunningPolicy) -> None:
    for subject in ("mallory", "admin", "operator", "viewer"):
        reply = await demo.check(subject, "actions:read", "fleet")
        assert not reply.allowed, subject
        assert reply.reason == R.DECISION_REASON_UNKNOWN_WORKSPACE


async def test_workspace_id_is_normalized(demo: RunningPolicy) -> None:
    reply = await demo.check("carol", "actions:read", "fleet", workspace_id=DEMO_WS.upper())
    assert reply.allowed


DEPARTMENT_POLICY = """
p, support_lead, *, fleet/departments/support/**, actions:pause_agent, allow
p, team_lead, 9b10be00-0000-4000-8000-000000000003, fleet/departments/**, actions:read, allow
g, sam, support_lead, ac3e0000-0000-4000-8000-000000000001
g, tess, team_lead, 9b10be00-0000-4000-8000-000000000003
g, tess, team_lead, ac3e0000-0000-4000-8000-000000000001
"""


async def test_department_grant_covers_its_agents_and_no_other_department(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    with (policy_copy / "policy.csv").open("a") as f:
        f.write(DEPARTMENT_POLICY)
    async with start_policy(policy_copy) as running:
        allowed = [
            "fleet/departments/support",
            "fleet/departments/support/agents/sup-chat-1",
        ]
        denied = [
            "fleet",
            "fleet/departments/support-2",
            "fleet/departments/support-2/agents/sup-chat-1",
            "fleet/departments/supportx",
            "fleet/departments/engineering/agents/support",
        ]
        for resource in allowed:
            assert (await running.check("sam", "actions:pause_agent", resource)).allowed, resource
        for resource in denied:
            reply = await running.check("sam", "actions:pause_agent", resource)
            assert not reply.allowed, resource
            assert reply.reason == R.DECISION_REASON_NO_MATCHING_RULE


async def test_workspace_scoped_grant_does_not_leak(
    start_policy: StartPolicy, policy_copy: Path
) -> None:
    with (policy_copy / "policy.csv").open("a") as f:
        f.write(DEPARTMENT_POLICY)
    async with start_policy(policy_copy) as running:
        home = await running.check(
            "tess",
            "actions:read",
            DEPARTMENT,
            workspace_id="9b10be00-0000-4000-8000-000000000003",
        )
        assert home.allowed
        # tess holds team_lead in acme too, but the grant names the other workspace only.
        away = await running.check("tess", "actions:read", DEPARTMENT)
        assert not away.allowed
        assert away.reason == R.DECISION_REASON_NO_MATCHING_RULE
        assert list(away.roles) == ["team_lead"]


async def test_batch_check_answers_in_order_with_one_version(demo: RunningPolicy) -> None:
    questions = [
        ("bob", "actions:pause_agent", AGENT, True),
        ("carol", "actions:pause_agent", AGENT, False),
        ("alice", "actions:restart_agent", AGENT, True),
        ("bob", "actions:set_budget", "fleet", False),
        ("dana", "actions:set_budget", "fleet", True),
    ]
    request = policy_pb2.BatchCheckRequest(
        checks=[
            policy_pb2.CheckRequest(subject=s, workspace_id=DEMO_WS, action=a, resource=r)
            for s, a, r, _ in questions
        ]
    )
    reply = await demo.stub.BatchCheck(request, metadata=demo.metadata)
    assert [r.allowed for r in reply.results] == [q[3] for q in questions]
    info = await demo.info()
    assert reply.policy_version == info.policy_version
    assert {r.policy_version for r in reply.results} == {info.policy_version}
    assert len({r.decision_id for r in reply.results}) == len(questions)


async def test_unlisted_workspaces_do_not_grow_the_role_cache(demo: RunningPolicy) -> None:
    snapshot = demo.built.reloader.state.snapshot
    assert snapshot is not None
    decider = snapshot.decider
    assert isinstance(decider, CasbinDecider)
    before = decider.cached_workspaces()
    for _ in range(50):
        reply = await demo.check(
            "sre-oncall", "actions:read", AGENT, workspace_id=str(uuid.uuid4())
        )
        assert reply.allowed
        reply = await demo.check("bob", "actions:read", AGENT, workspace_id=str(uuid.uuid4()))
        assert reply.reason == R.DECISION_REASON_UNKNOWN_WORKSPACE
    assert decider.cached_workspaces() == before


async def test_policy_info_describes_the_demo_policy(demo: RunningPolicy) -> None:
    info = await demo.info()
    assert len(info.policy_version) == 12
    assert info.rule_count == 7
    assert info.role_link_count == 7
    assert info.last_reload_error == ""
    assert info.loaded_at.seconds > 0
    assert info.last_reload_at.seconds > 0
