"""One hostile field at a time, for :func:`tests.security.badinput.all_cases`.

A random request usually fails on its first bad field, so later fields are rarely reached.
These cases start from a request that is valid in every field and make exactly ONE of
them hostile, so each field's own check (or the lack of one) is exercised. The oracle is
weaker than that of the other cases (a field may be fine either way) but the one that matters:
never INTERNAL or UNKNOWN, always one fleetward ErrorInfo, nothing written.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from fleetward.actions.v1 import actions_pb2
from fleetward.policy.v1 import policy_pb2
from hypothesis import strategies as st

from tests.security.badinput_base import MESSAGE_LIMIT, C, Case, texts

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


ONE_FIELD_RPCS = [
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
LIST_ACTIONS_FIELDS = [
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


@st.composite
def one_field_case(
    draw: st.DrawFn, workspaces: list[str], actions: list[str], tokens: list[str]
) -> Case:
    """A valid request of some RPC with exactly one field made hostile."""
    ws = workspaces[0]
    rpc = draw(st.sampled_from(ONE_FIELD_RPCS))
    request: Any
    subject = "bob"
    service = "actions"
    if rpc in ("Execute", "Rollback"):
        subject = "mallory"  # a valid request is PERMISSION_DENIED and not recorded
        request = _write_request(draw, rpc, ws, actions)
    elif rpc in ("Check", "CheckResources"):
        subject, service = "svc", "policy"
        request = _policy_request(draw, rpc, ws)
    else:
        request = _read_request(draw, rpc, ws, actions, tokens)
    expect = NOT_A_CRASH
    if request.ByteSize() > MESSAGE_LIMIT and service == "actions":
        expect = frozenset({C.RESOURCE_EXHAUSTED})
    return Case(rpc, request, subject, expect, service=service)


def _read_request(draw: st.DrawFn, rpc: str, ws: str, actions: list[str], tokens: list[str]) -> Any:
    """A read of ``rpc`` (any but the writes and the policy service's) with one hostile field."""
    if rpc == "ListActions":
        return _list_actions(draw, ws, tokens)
    if rpc == "ListAgents":
        return _list_agents(draw, ws, tokens)
    if rpc == "GetAgent":
        agent = actions_pb2.GetAgentRequest(workspace_id=ws, agent_id="eng-code-1")
        setattr(agent, draw(st.sampled_from(["workspace_id", "agent_id"])), draw(hostile_texts))
        return agent
    if rpc in ("GetAction", "ListActionEvents"):
        message = (
            actions_pb2.GetActionRequest
            if rpc == "GetAction"
            else actions_pb2.ListActionEventsRequest
        )
        request = message(workspace_id=ws, action_id=actions[0])
        setattr(request, draw(st.sampled_from(["workspace_id", "action_id"])), draw(hostile_texts))
        return request
    if rpc == "CheckAccess":
        return _check_access(draw, ws)
    return _watch_actions(draw, ws)


def _list_actions(draw: st.DrawFn, ws: str, tokens: list[str]) -> actions_pb2.ListActionsRequest:
    request = actions_pb2.ListActionsRequest(workspace_id=ws, page_size=5)
    name = draw(st.sampled_from(LIST_ACTIONS_FIELDS))
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
    return request


def _list_agents(draw: st.DrawFn, ws: str, tokens: list[str]) -> actions_pb2.ListAgentsRequest:
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
    return request


def _check_access(draw: st.DrawFn, ws: str) -> actions_pb2.CheckAccessRequest:
    request = actions_pb2.CheckAccessRequest(workspace_id=ws)
    target = request.targets.add(scope=actions_pb2.SCOPE_AGENT, target_id="eng-code-1")
    name = draw(st.sampled_from(["workspace_id", "scope", "target_id"]))
    if name == "scope":
        target.scope = draw(st.integers(-(2**31), 2**31 - 1))  # type: ignore[assignment]
    elif name == "target_id":
        target.target_id = draw(hostile_texts)
    else:
        request.workspace_id = draw(hostile_texts)
    return request


def _watch_actions(draw: st.DrawFn, ws: str) -> actions_pb2.WatchActionsRequest:
    request = actions_pb2.WatchActionsRequest(workspace_id=ws)
    name = draw(st.sampled_from(["workspace_id", "after_seq", "live_only"]))
    if name == "workspace_id":
        request.workspace_id = draw(hostile_texts)
    elif name == "after_seq":
        request.after_seq = draw(HOSTILE_INTS)
    else:  # live_only, alone or with a cursor
        request.live_only = True
        request.after_seq = draw(st.just(0) | HOSTILE_INTS)
    return request


def _write_request(draw: st.DrawFn, rpc: str, ws: str, actions: list[str]) -> Any:
    """A valid Execute (a 5-minute pause) or Rollback with one hostile field."""
    request: Any
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
    return request


def _policy_request(draw: st.DrawFn, rpc: str, ws: str) -> Any:
    """A valid Check or CheckResources of the policy service with one hostile field."""
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
        return policy_pb2.CheckRequest(
            subject=who, workspace_id=where, action=what, resource=fields["resource"]
        )
    return policy_pb2.CheckResourcesRequest(
        subject=who,
        workspace_id=where,
        action=what,
        resources=[fields["resource"], "fleet"],
    )
