"""Hypothesis strategies for hostile requests to every RPC, each with the status
docs/architecture.md §4 requires.

A :class:`Case` is one call: the RPC, the request, who makes it and the codes the
contract allows. Writes are impossible by construction: Execute and Rollback are sent by
``mallory`` (no role anywhere: a valid request is PERMISSION_DENIED and, by
docs/architecture.md §5.1, not recorded), reads by ``bob`` (a viewer everywhere) or
``mallory``. The oracles restate the contract (docs/architecture.md §2, §4) independently
of services/actions/validation.py.
"""

from __future__ import annotations

from typing import Any

import grpc
from fleetward.actions.v1 import actions_pb2
from fleetward.policy.v1 import policy_pb2
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.security.badinput_base import (
    ID,
    MESSAGE_LIMIT,
    REQUEST_ID,
    C,
    execute_valid,
    reason_ok,
    target_ok,
    texts,
    uuid_ok,
    uuids,
)

# Re-exported: test_bad_input takes Case from here, test_injection SQL.
from tests.security.badinput_base import SQL as SQL
from tests.security.badinput_base import Case as Case
from tests.security.badinput_fields import one_field_case


@st.composite
def execute_case(draw: st.DrawFn, workspaces: list[str]) -> Case:
    """Execute by mallory: INVALID_ARGUMENT when malformed, else PERMISSION_DENIED."""
    r = actions_pb2.ExecuteRequest(
        workspace_id=draw(uuids(workspaces)),
        target_id=draw(texts),
        reason=draw(texts | st.just("fuzzed reason")),
        request_id=draw(texts | st.uuids().map(lambda u: u.hex)),
        validate_only=draw(st.booleans()),
        skip_denied=draw(st.booleans()),
    )
    r.scope = draw(st.integers(-3, 6))  # type: ignore[assignment]
    action = draw(st.sampled_from(["pause_agent", "resume_agent", "set_budget", "restart_agent"]))
    if draw(st.booleans()) or action in ("resume_agent", "restart_agent"):
        getattr(r, action).SetInParent()
    if action == "pause_agent" and draw(st.booleans()):
        r.pause_agent.duration_minutes = draw(st.integers(-(2**31), 2**31 - 1))
        r.pause_agent.indefinite = draw(st.booleans())
    if action == "set_budget":
        if draw(st.booleans()):
            r.set_budget.monthly_limit_cents = draw(st.integers(-(2**63), 2**63 - 1))
        r.set_budget.clear = draw(st.booleans())
    code = C.PERMISSION_DENIED if execute_valid(r) else C.INVALID_ARGUMENT
    return Case("Execute", r, "mallory", frozenset({code}))


@st.composite
def rollback_case(draw: st.DrawFn, workspaces: list[str], actions: list[str]) -> Case:
    """Rollback by mallory."""
    r = actions_pb2.RollbackRequest(
        workspace_id=draw(uuids(workspaces)),
        action_id=draw(uuids(actions)),
        reason=draw(texts | st.just("fuzzed reason")),
        request_id=draw(texts | st.uuids().map(lambda u: u.hex)),
        validate_only=draw(st.booleans()),
        skip_superseded=draw(st.booleans()),
        skip_denied=draw(st.booleans()),
    )
    valid = uuid_ok(r.workspace_id) and uuid_ok(r.action_id) and reason_ok(r.reason)
    valid = valid and REQUEST_ID.fullmatch(r.request_id) is not None
    code = C.PERMISSION_DENIED if valid else C.INVALID_ARGUMENT
    return Case("Rollback", r, "mallory", frozenset({code}))


def _read_expect(ids_ok: bool, subject: str) -> frozenset[grpc.StatusCode]:
    if not ids_ok:
        return frozenset({C.INVALID_ARGUMENT})
    if subject == "mallory":
        return frozenset({C.PERMISSION_DENIED})
    return frozenset({C.OK, C.NOT_FOUND, C.INVALID_ARGUMENT})


READ_RPCS = [
    "GetAction",
    "ListActions",
    "ListActionEvents",
    "GetAgent",
    "ListAgents",
    "ListActionTypes",
    "Watch",
    "CheckAccess",
]


@st.composite
def read_case(
    draw: st.DrawFn, workspaces: list[str], actions: list[str], tokens: list[str]
) -> Case:
    """GetAction, ListActions, ListActionEvents, GetAgent, ListAgents, ListActionTypes,
    WatchActions, CheckAccess."""
    subject = draw(st.sampled_from(["bob", "mallory"]))
    ws = draw(uuids(workspaces))
    rpc = draw(st.sampled_from(READ_RPCS))
    if rpc == "CheckAccess":
        return _check_access_case(draw, ws, subject)
    if rpc == "ListActionTypes":
        return Case(rpc, actions_pb2.ListActionTypesRequest(), subject, frozenset({C.OK}))
    if rpc == "Watch":
        return _watch_case(draw, ws, subject)
    request, ok = _read_request(draw, rpc, ws, actions, tokens)
    expect = _read_expect(ok, subject)
    if rpc.startswith("List") and ok:
        expect |= {C.INVALID_ARGUMENT}  # filters, page sizes and tokens are checked too
    return Case(rpc, request, subject, expect)


def _check_access_case(draw: st.DrawFn, ws: str, subject: str) -> Case:
    request = actions_pb2.CheckAccessRequest(workspace_id=ws)
    for _ in range(
        draw(st.integers(0, 6)) if draw(st.booleans()) else draw(st.sampled_from([0, 501]))
    ):
        request.targets.add(scope=draw(st.integers(-2, 5)), target_id=draw(texts))
    ok = uuid_ok(ws) and 1 <= len(request.targets) <= 500
    ok = ok and all(target_ok(int(t.scope), t.target_id) for t in request.targets)
    # Each target once (a repeat is refused, not answered twice).
    ok = ok and len({(t.scope, t.target_id) for t in request.targets}) == len(request.targets)
    # Valid: answered (a caller without a role is told "denied" for each permission),
    # or, for an unknown target, NOT_FOUND / PERMISSION_DENIED as Execute would say.
    expect = frozenset({C.OK, C.NOT_FOUND, C.PERMISSION_DENIED} if ok else {C.INVALID_ARGUMENT})
    if request.ByteSize() > MESSAGE_LIMIT:  # 501 long ids: over the 1 MiB limit
        expect = frozenset({C.RESOURCE_EXHAUSTED})
    return Case("CheckAccess", request, subject, expect)


def _watch_case(draw: st.DrawFn, ws: str, subject: str) -> Case:
    request = actions_pb2.WatchActionsRequest(
        workspace_id=ws,
        after_seq=draw(st.integers(-(2**63), 2**63 - 1) | st.just(0)),
        live_only=draw(st.booleans()),
    )
    # live_only streams what comes next: a cursor with it is refused.
    cursor_ok = request.after_seq == 0 if request.live_only else request.after_seq >= 0
    expect = _read_expect(uuid_ok(ws) and cursor_ok, subject)
    # A valid stream stays open until the client's deadline.
    return Case("WatchActions", request, subject, expect | {C.DEADLINE_EXCEEDED})


def _read_request(
    draw: st.DrawFn, rpc: str, ws: str, actions: list[str], tokens: list[str]
) -> tuple[Message, bool]:
    """A Get or List request with drawn fields, and whether its ids are well-formed."""
    if rpc == "GetAction":
        get = actions_pb2.GetActionRequest(workspace_id=ws, action_id=draw(uuids(actions)))
        return get, uuid_ok(ws) and uuid_ok(get.action_id)
    if rpc == "ListActionEvents":
        events = actions_pb2.ListActionEventsRequest(
            workspace_id=ws, action_id=draw(uuids(actions))
        )
        return events, uuid_ok(ws) and uuid_ok(events.action_id)
    if rpc == "GetAgent":
        agent = actions_pb2.GetAgentRequest(workspace_id=ws, agent_id=draw(texts))
        return agent, uuid_ok(ws) and ID.fullmatch(agent.agent_id) is not None
    if rpc == "ListActions":
        request = actions_pb2.ListActionsRequest(
            workspace_id=ws,
            action_type=draw(texts),
            actor_subject=draw(texts),
            target_id=draw(texts),
            page_size=draw(st.integers(-(2**31), 2**31 - 1)),
            page_token=draw(texts | st.sampled_from(tokens)),
        )
        request.status = draw(st.integers(-2, 9))  # type: ignore[assignment]
        if draw(st.booleans()):
            request.created_after.seconds = draw(st.integers(-(2**40), 2**40))
            request.created_after.nanos = draw(st.integers(-5, 10**9 + 5))
        return request, uuid_ok(ws)
    agents = actions_pb2.ListAgentsRequest(
        workspace_id=ws,
        department_id=draw(texts),
        page_size=draw(st.integers(-(2**31), 2**31 - 1)),
        page_token=draw(texts | st.sampled_from(tokens)),
    )
    agents.status = draw(st.integers(-2, 6))  # type: ignore[assignment]
    return agents, uuid_ok(ws)


@st.composite
def garbage_token_case(draw: st.DrawFn, workspaces: list[str]) -> Case:
    """Any RPC with a token that is not one: UNAUTHENTICATED, nothing else."""
    alphabet = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
    token = draw(
        st.text(alphabet=alphabet, min_size=1, max_size=300)
        | st.sampled_from(["eyJhbGciOiJub25lIn0.e30.", "a.b.c", "Bearer", "null"])
    )
    rpc, request = draw(
        st.sampled_from(
            [
                ("Execute", actions_pb2.ExecuteRequest(workspace_id=workspaces[0])),
                ("GetAgent", actions_pb2.GetAgentRequest(workspace_id=workspaces[0])),
                ("ListActionTypes", actions_pb2.ListActionTypesRequest()),
                ("ListActions", actions_pb2.ListActionsRequest(workspace_id=workspaces[0])),
                (
                    "ListActionEvents",
                    actions_pb2.ListActionEventsRequest(workspace_id=workspaces[0]),
                ),
                ("CheckAccess", actions_pb2.CheckAccessRequest(workspace_id=workspaces[0])),
            ]
        )
    )
    return Case(rpc, request, f"garbage:{token}", frozenset({C.UNAUTHENTICATED}))


def _check_request(draw: st.DrawFn, workspaces: list[str]) -> policy_pb2.CheckRequest:
    action = draw(
        texts
        | st.sampled_from(["actions:read", "actions:rollback", "actions:pause_agent", "actions:*"])
    )
    resource = draw(texts | st.sampled_from(["fleet", "fleet/departments/support", "fleet/**"]))
    return policy_pb2.CheckRequest(
        subject=draw(texts | st.sampled_from(["bob", "admin", "svc:actions"])),
        workspace_id=draw(uuids(workspaces)),
        action=action,
        resource=resource,
        explain=draw(st.booleans()),
    )


@st.composite
def policy_case(draw: st.DrawFn, workspaces: list[str]) -> Case:
    """Check / BatchCheck / CheckResources / GetPolicyInfo as the action service: answered or
    refused cleanly."""
    kind = draw(st.sampled_from(["Check", "BatchCheck", "CheckResources", "GetPolicyInfo"]))
    request: Any
    if kind == "Check":
        request = _check_request(draw, workspaces)
    elif kind == "CheckResources":
        one = _check_request(draw, workspaces)
        resources = st.sampled_from(["fleet", "fleet/departments/support"]) | texts
        request = policy_pb2.CheckResourcesRequest(
            subject=one.subject,
            workspace_id=one.workspace_id,
            action=one.action,
            resources=draw(st.lists(resources, max_size=30)),
        )
    elif kind == "BatchCheck":
        n = draw(st.integers(0, 20))
        request = policy_pb2.BatchCheckRequest(
            checks=[_check_request(draw, workspaces) for _ in range(n)]
        )
    else:
        request = policy_pb2.GetPolicyInfoRequest()
    expect = frozenset({C.OK, C.INVALID_ARGUMENT})
    return Case(kind, request, "svc", expect, service="policy")


def all_cases(
    workspaces: list[str], actions: list[str], tokens: list[str]
) -> st.SearchStrategy[Case]:
    """Every kind of hostile call, mixed."""
    return st.one_of(
        execute_case(workspaces),
        rollback_case(workspaces, actions),
        read_case(workspaces, actions, tokens),
        garbage_token_case(workspaces),
        policy_case(workspaces),
        one_field_case(workspaces, actions, tokens),
        one_field_case(workspaces, actions, tokens),
    )
