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

import base64
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from fleetward.actions.v1 import actions_pb2
from fleetward.policy.v1 import policy_pb2
from google.protobuf.message import Message
from hypothesis import strategies as st

from services.common.text import text_problem, visible_length

C = grpc.StatusCode
ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SQL = (
    "'; DROP TABLE agents; --",
    "' OR '1'='1",
    "x'); UPDATE agents SET status='paused' WHERE ('1'='1",
    "$1",
    "%s%s%s",
    "\\'; SELECT pg_sleep(5); --",
)
BOUNDARY = (
    "",
    " ",
    "ab",
    "abc",
    "   abc   ",
    "\x00",
    "abc\x00def",
    "a" * 64,
    "a" * 65,
    "A" * 128,
    "A" * 129,
    "x" * 1000,
    "x" * 1001,
    "x" * 200_000,
    "../../etc/passwd",
    "fleet/**",
    "*",
    "eng-code-1/../x",
    "ÉNG-code",
    "\u202eevil",
    "zero\u200bwidth",
    "💥" * 300,
    "actions:*",
    "svc:actions",
    "system:scheduler",
    *SQL,
)
MESSAGE_LIMIT = 1024 * 1024
AGENTS = ("eng-code-1", "sup-chat-1", "no-such-agent", "engineering", "support")
EXPECTED_ANY = frozenset({C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.PERMISSION_DENIED})

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(BOUNDARY),
    st.text(alphabet="abcz019._-:/A*", max_size=70),
    st.sampled_from(AGENTS),
)


@dataclass(frozen=True)
class Case:
    """One hostile call and the codes the contract allows for it."""

    rpc: str
    request: Message
    subject: str  # a user, "svc" (a service token) or "garbage:<token>"
    expect: frozenset[grpc.StatusCode]
    service: str = "actions"


def uuid_ok(value: str) -> bool:
    """A UUID in canonical form (any case), as the contract requires."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def reason_ok(value: str) -> bool:
    """At most 1000 characters, 3 of them visible, nothing that hides or reorders text
    (the reason rule of services/common/text.py, whose own tests pin it down)."""
    return len(value) <= 1000 and visible_length(value) >= 3 and text_problem(value) is None


def execute_valid(r: actions_pb2.ExecuteRequest) -> bool:
    """Whether ``r`` passes every rule of the ExecuteRequest contract (docs/architecture.md §2)."""
    scope = {1: "fleet", 2: "department", 3: "agent"}.get(int(r.scope))
    which = r.WhichOneof("params")
    ok = uuid_ok(r.workspace_id) and reason_ok(r.reason) and scope is not None
    ok = ok and REQUEST_ID.fullmatch(r.request_id) is not None and which is not None
    ok = ok and ((r.target_id == "") if scope == "fleet" else bool(ID.fullmatch(r.target_id)))
    if not ok:
        return False
    if which == "pause_agent" and r.pause_agent.HasField("duration_minutes"):
        return not r.pause_agent.indefinite and 1 <= r.pause_agent.duration_minutes <= 10080
    if which == "set_budget":
        has = r.set_budget.HasField("monthly_limit_cents")
        return has != r.set_budget.clear and (
            not has or 0 <= r.set_budget.monthly_limit_cents <= 10**12
        )
    return not (which == "restart_agent" and scope != "agent")


def _target_ok(scope: int, target_id: str) -> bool:
    if scope == 1:
        return target_id == ""
    return scope in (2, 3) and ID.fullmatch(target_id) is not None


def uuids(known: list[str]) -> st.SearchStrategy[str]:
    """Known workspace/action ids, random UUIDs and malformed ones."""
    return st.one_of(
        st.sampled_from(known),
        st.uuids().map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.uuids().map(lambda u: "{" + str(u) + "}"),
        st.uuids().map(lambda u: u.hex),
        st.sampled_from(known).map(lambda s: s[:-1]),
        texts,
    )


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


@st.composite
def read_case(
    draw: st.DrawFn, workspaces: list[str], actions: list[str], tokens: list[str]
) -> Case:
    """GetAction, ListActions, ListActionEvents, GetAgent, ListAgents, ListActionTypes,
    WatchActions, CheckAccess."""
    subject = draw(st.sampled_from(["bob", "mallory"]))
    ws = draw(uuids(workspaces))
    rpc = draw(
        st.sampled_from(
            [
                "GetAction",
                "ListActions",
                "ListActionEvents",
                "GetAgent",
                "ListAgents",
                "ListActionTypes",
                "Watch",
                "CheckAccess",
            ]
        )
    )
    request: Message
    if rpc == "CheckAccess":
        request = actions_pb2.CheckAccessRequest(workspace_id=ws)
        for _ in range(
            draw(st.integers(0, 6)) if draw(st.booleans()) else draw(st.sampled_from([0, 501]))
        ):
            request.targets.add(scope=draw(st.integers(-2, 5)), target_id=draw(texts))
        ok = uuid_ok(ws) and 1 <= len(request.targets) <= 500
        ok = ok and all(_target_ok(int(t.scope), t.target_id) for t in request.targets)
        # Each target once (a repeat is refused, not answered twice).
        ok = ok and len({(t.scope, t.target_id) for t in request.targets}) == len(request.targets)
        # Valid: answered (a caller without a role is told "denied" for each permission),
        # or, for an unknown target, NOT_FOUND / PERMISSION_DENIED as Execute would say.
        expect = frozenset({C.OK, C.NOT_FOUND, C.PERMISSION_DENIED} if ok else {C.INVALID_ARGUMENT})
        if request.ByteSize() > MESSAGE_LIMIT:  # 501 long ids: over the 1 MiB limit
            expect = frozenset({C.RESOURCE_EXHAUSTED})
        return Case(rpc, request, subject, expect)
    if rpc == "GetAction":
        request = actions_pb2.GetActionRequest(workspace_id=ws, action_id=draw(uuids(actions)))
        ok = uuid_ok(ws) and uuid_ok(request.action_id)
    elif rpc == "ListActionEvents":
        request = actions_pb2.ListActionEventsRequest(
            workspace_id=ws, action_id=draw(uuids(actions))
        )
        ok = uuid_ok(ws) and uuid_ok(request.action_id)
    elif rpc == "GetAgent":
        request = actions_pb2.GetAgentRequest(workspace_id=ws, agent_id=draw(texts))
        ok = uuid_ok(ws) and ID.fullmatch(request.agent_id) is not None
    elif rpc == "ListActions":
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
        ok = uuid_ok(ws)
    elif rpc == "ListAgents":
        request = actions_pb2.ListAgentsRequest(
            workspace_id=ws,
            department_id=draw(texts),
            page_size=draw(st.integers(-(2**31), 2**31 - 1)),
            page_token=draw(texts | st.sampled_from(tokens)),
        )
        request.status = draw(st.integers(-2, 6))  # type: ignore[assignment]
        ok = uuid_ok(ws)
    elif rpc == "ListActionTypes":
        return Case(rpc, actions_pb2.ListActionTypesRequest(), subject, frozenset({C.OK}))
    else:
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
    expect = _read_expect(ok, subject)
    if rpc.startswith("List") and ok:
        expect |= {C.INVALID_ARGUMENT}  # filters, page sizes and tokens are checked too
    return Case(rpc, request, subject, expect)


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


# --- one hostile field at a time ----------------------------------------------------------
# A random request usually fails on its first bad field, so later fields are rarely reached.
# These cases start from a request that is valid in every field and make exactly ONE of
# them hostile, so each field's own check (or the lack of one) is exercised. The oracle is
# weaker than above (a field may be fine either way) but the one that matters: never
# INTERNAL or UNKNOWN, always one fleetward ErrorInfo, nothing written.
NOT_A_CRASH = frozenset(set(C) - {C.INTERNAL, C.UNKNOWN, C.DATA_LOSS, C.UNIMPLEMENTED})
HOSTILE_INTS = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from([-1, 0, 1, 2**31 - 1, -(2**31), 2**63 - 1])
)
HOSTILE_SECONDS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([-62_135_596_801, -62_135_596_800, 253_402_300_799, 253_402_300_800, 0]),
)
HOSTILE_NANOS = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([-1, 10**9, 10**9 - 1]))
hostile_texts = texts | st.sampled_from(
    ["\x1b[1A\x1b[2K\r", "a\x00b", "\x85next", "\u2028", "[" * 50_000, "eyJ" + "A" * 2000]
)


def _hostile_token(draw: st.DrawFn, tokens: list[str]) -> str:
    """A page token: garbage, a real one altered, or a forged one with a hostile cursor."""
    kind = draw(st.sampled_from(["text", "real", "forged", "deep"]))
    if kind == "real":
        token = draw(st.sampled_from(tokens))
        return token[: draw(st.integers(0, len(token)))] + draw(st.text(max_size=4))
    if kind == "deep":
        return base64.urlsafe_b64encode(b"[" * draw(st.integers(1, 60_000))).decode()
    if kind == "forged":
        cursor = draw(st.lists(hostile_texts | st.integers() | st.none(), max_size=3))
        doc = {"f": draw(st.text(max_size=24)), "c": cursor}
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    return draw(hostile_texts)


@st.composite
def one_field_case(
    draw: st.DrawFn, workspaces: list[str], actions: list[str], tokens: list[str]
) -> Case:
    """A valid request of some RPC with exactly one field made hostile."""
    ws = workspaces[0]
    rpc = draw(
        st.sampled_from(
            [
                "ListActions",
                "ListAgents",
                "GetAgent",
                "GetAction",
                "ListActionEvents",
                "Execute",
                "Rollback",
                "CheckAccess",
                "WatchActions",
                "Check",
                "CheckResources",
            ]
        )
    )
    request: Any
    subject = "bob"
    service = "actions"
    if rpc == "ListActions":
        request = actions_pb2.ListActionsRequest(workspace_id=ws, page_size=5)
        name = draw(
            st.sampled_from(
                [
                    "workspace_id",
                    "action_type",
                    "status",
                    "actor_subject",
                    "target_id",
                    "created_after",
                    "created_before",
                    "page_size",
                    "page_token",
                ]
            )
        )
        if name in ("created_after", "created_before"):
            stamp = getattr(request, name)
            stamp.seconds = draw(HOSTILE_SECONDS)
            stamp.nanos = draw(HOSTILE_NANOS)
        elif name in ("status", "page_size"):
            setattr(request, name, draw(st.integers(-(2**31), 2**31 - 1)))
        elif name == "page_token":
            request.page_token = _hostile_token(draw, tokens)
        else:
            setattr(request, name, draw(hostile_texts))
    elif rpc == "ListAgents":
        request = actions_pb2.ListAgentsRequest(workspace_id=ws, page_size=5)
        name = draw(
            st.sampled_from(["workspace_id", "department_id", "status", "page_size", "page_token"])
        )
        if name in ("status", "page_size"):
            setattr(request, name, draw(st.integers(-(2**31), 2**31 - 1)))
        elif name == "page_token":
            request.page_token = _hostile_token(draw, tokens)
        else:
            setattr(request, name, draw(hostile_texts))
    elif rpc == "GetAgent":
        request = actions_pb2.GetAgentRequest(workspace_id=ws, agent_id="eng-code-1")
        setattr(request, draw(st.sampled_from(["workspace_id", "agent_id"])), draw(hostile_texts))
    elif rpc in ("GetAction", "ListActionEvents"):
        message = (
            actions_pb2.GetActionRequest
            if rpc == "GetAction"
            else actions_pb2.ListActionEventsRequest
        )
        request = message(workspace_id=ws, action_id=actions[0])
        setattr(request, draw(st.sampled_from(["workspace_id", "action_id"])), draw(hostile_texts))
    elif rpc in ("Execute", "Rollback"):
        subject = "mallory"  # a valid request is PERMISSION_DENIED and not recorded
        if rpc == "Execute":
            request = actions_pb2.ExecuteRequest(
                workspace_id=ws,
                scope=actions_pb2.SCOPE_AGENT,
                target_id="eng-code-1",
                reason="one hostile field",
                request_id="one-field",
                pause_agent=actions_pb2.PauseAgentParams(duration_minutes=5),
            )
            names = ["workspace_id", "scope", "target_id", "reason", "request_id", "minutes"]
        else:
            request = actions_pb2.RollbackRequest(
                workspace_id=ws, action_id=actions[0], reason="one hostile field", request_id="x"
            )
            names = ["workspace_id", "action_id", "reason", "request_id"]
        name = draw(st.sampled_from(names))
        if name == "scope":
            request.scope = draw(st.integers(-(2**31), 2**31 - 1))
        elif name == "minutes":
            request.pause_agent.duration_minutes = draw(st.integers(-(2**31), 2**31 - 1))
        else:
            setattr(request, name, draw(hostile_texts))
    elif rpc == "CheckAccess":
        request = actions_pb2.CheckAccessRequest(workspace_id=ws)
        target = request.targets.add(scope=actions_pb2.SCOPE_AGENT, target_id="eng-code-1")
        name = draw(st.sampled_from(["workspace_id", "scope", "target_id"]))
        if name == "scope":
            target.scope = draw(st.integers(-(2**31), 2**31 - 1))
        elif name == "target_id":
            target.target_id = draw(hostile_texts)
        else:
            request.workspace_id = draw(hostile_texts)
    elif rpc == "WatchActions":
        request = actions_pb2.WatchActionsRequest(workspace_id=ws)
        name = draw(st.sampled_from(["workspace_id", "after_seq", "live_only"]))
        if name == "workspace_id":
            request.workspace_id = draw(hostile_texts)
        elif name == "after_seq":
            request.after_seq = draw(HOSTILE_INTS)
        else:  # live_only, alone or with a cursor
            request.live_only = True
            request.after_seq = draw(st.just(0) | HOSTILE_INTS)
    else:
        subject, service = "svc", "policy"
        fields = {
            "subject": "bob",
            "workspace_id": ws,
            "action": "actions:read",
            "resource": "fleet",
        }
        name = draw(st.sampled_from(sorted(fields)))
        fields[name] = draw(hostile_texts)
        who, where, what = fields["subject"], fields["workspace_id"], fields["action"]
        if rpc == "Check":
            request = policy_pb2.CheckRequest(
                subject=who, workspace_id=where, action=what, resource=fields["resource"]
            )
        else:
            request = policy_pb2.CheckResourcesRequest(
                subject=who,
                workspace_id=where,
                action=what,
                resources=[fields["resource"], "fleet"],
            )
    expect = NOT_A_CRASH
    if request.ByteSize() > MESSAGE_LIMIT and service == "actions":
        expect = frozenset({C.RESOURCE_EXHAUSTED})
    return Case(rpc, request, subject, expect, service=service)
