"""An event's payload and its audit row say the same thing, in both directions.

``documents.snapshot`` makes the payload an event stores (and hashes) from a row;
``documents.payload_row`` reads a payload back in the row shape ``convert.action`` reads.
They are exact inverses on payloads, and an Action read from an event (WatchActions,
ListActionEvents) equals the Action read from its row (GetAction), for any row the
schema admits, including one stored as jsonb and read back.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.actions import catalog, convert
from services.actions.audit import documents
from services.actions.model import ActionStatus, Scope

_IDS = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True)
_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_OBJECTS = st.dictionaries(st.text(max_size=8), _JSON, max_size=4)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    """An audit row as asyncpg returns it (UUIDs, aware times, jsonb as Python values)."""
    status = draw(st.sampled_from(list(ActionStatus)))
    scope = draw(st.sampled_from(list(Scope)))
    maybe_time = st.none() | _TIMES
    return {
        "action_id": draw(st.uuids()),
        "workspace_id": draw(st.uuids()),
        "action_type": draw(st.sampled_from([*sorted(catalog.registry()), "rollback"])),
        "scope": scope,
        "target_id": "" if scope == Scope.FLEET else draw(_IDS),
        "action_params": draw(_OBJECTS),
        "reason": draw(st.text(min_size=3, max_size=40)),
        "status": status,
        "result": draw(st.none() | _OBJECTS),
        "error_message": draw(st.none() | st.text(max_size=40)),
        "error_details": None,
        "actor_user_id": draw(st.text(min_size=1, max_size=20)),
        "actor_role": ",".join(draw(st.lists(_IDS.filter(lambda r: "," not in r), max_size=3))),
        "can_rollback": draw(st.booleans()),
        "rollback_action_id": draw(st.none() | st.uuids()),
        "rollback_of_action_id": draw(st.none() | st.uuids()),
        "request_id": draw(st.from_regex(r"[A-Za-z0-9._:-]{1,32}", fullmatch=True)),
        "request_fingerprint": "f",
        "policy_version": draw(st.none() | st.text(max_size=12)),
        "decision_id": draw(st.none() | st.text(max_size=40)),
        "trace_id": draw(st.none() | st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
        "created_at": draw(_TIMES),
        "started_at": draw(maybe_time),
        "completed_at": draw(maybe_time),
        "rolled_back_at": draw(maybe_time),
    }


def _stored(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as jsonb gives it back (JSON text parsed again)."""
    back: dict[str, Any] = json.loads(json.dumps(payload))
    return back


@settings(deadline=None)  # no wall-clock bound in a unit test (a loaded CI machine)
@given(rows())
def test_a_payload_read_back_is_the_same_payload(row: dict[str, Any]) -> None:
    payload = _stored(documents.snapshot(row))
    again = documents.snapshot(documents.payload_row(payload))
    assert again == payload
    assert documents.canonical(again) == documents.canonical(payload)


@settings(deadline=None)  # no wall-clock bound in a unit test (a loaded CI machine)
@given(rows())
def test_the_action_from_an_event_is_the_action_from_its_row(row: dict[str, Any]) -> None:
    from_event = convert.action(documents.payload_row(_stored(documents.snapshot(row))))
    assert from_event == convert.action(row)


def test_an_event_recorded_before_trace_ids_reads_as_untraced() -> None:
    row = {
        "action_id": uuid.uuid4(),
        "workspace_id": uuid.uuid4(),
        "action_type": "pause_agent",
        "scope": "agent",
        "target_id": "eng-code-1",
        "action_params": {},
        "reason": "old event",
        "status": "completed",
        "result": None,
        "error_message": None,
        "actor_user_id": "bob",
        "actor_role": "operator",
        "can_rollback": True,
        "rollback_action_id": None,
        "rollback_of_action_id": None,
        "request_id": "r1",
        "policy_version": "v1",
        "decision_id": "d1",
        "trace_id": None,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "started_at": None,
        "completed_at": None,
        "rolled_back_at": None,
    }
    payload = _stored(documents.snapshot(row))
    assert "trace_id" not in payload  # such an event's bytes are what they always were
    assert convert.action(documents.payload_row(payload)).trace_id == ""
