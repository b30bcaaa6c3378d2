"""The vocabulary of :mod:`tests.security.badinput`: hostile strings, the :class:`Case`,
and the contract's rules on ids, reasons and ExecuteRequest (docs/architecture.md §2, §4)
restated independently of services/actions/validation.py.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import grpc
from fleetward.actions.v1 import actions_pb2
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


def target_ok(scope: int, target_id: str) -> bool:
    """Whether a CheckAccess target's scope and id are well-formed (fleet: no id)."""
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
