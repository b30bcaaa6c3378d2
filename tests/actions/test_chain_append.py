"""PostgreSQL hashes the chain exactly as ``audit verify`` does (migration 0003).

The service sends each event's canonical document in two pieces around its ``seq``; the
database numbers and hashes it under the head's lock. These tests pin that the pieces are
the canonical document byte for byte, that the database's hashes are Python's, and that
a payload is hashed in the form jsonb gives back (what ``audit verify`` reads).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.actions import store
from services.actions.audit import documents
from services.actions.audit.verify import verify_workspace
from services.actions.db import init_connection
from tests.actions.helpers import Api
from tests.conftest import NewWorkspace

EVENT_TYPES = ["action.pending", "action.in_progress", "action.completed", "action.failed"]
# JSON as it can reach jsonb: no NUL in strings (PostgreSQL refuses it), finite numbers.
_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
SAMPLE = settings(
    max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@QUICK
@given(
    workspace=st.uuids(),
    action=st.uuids(),
    event_type=st.sampled_from(EVENT_TYPES),
    payload=json_values,
    seq=st.integers(min_value=1, max_value=2**62),
    micros=st.integers(min_value=0, max_value=10**15),
)
def test_pieces_around_the_seq_are_the_canonical_document(
    workspace: uuid.UUID,
    action: uuid.UUID,
    event_type: str,
    payload: Any,
    seq: int,
    micros: int,
) -> None:
    created = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    doc = documents.event_document(workspace, seq, action, event_type, payload, created)
    pieces = (
        documents.doc_head(action, event_type, payload, created)
        + str(seq).encode()
        + documents.doc_tail(workspace)
    )
    assert pieces == documents.canonical(doc)


async def test_jsonb_value_is_what_jsonb_gives_back(pool: asyncpg.Pool) -> None:
    values: list[Any] = []

    @SAMPLE
    @given(json_values)
    def collect(value: Any) -> None:
        values.append(value)

    collect()
    values += [1e16, -1.5e300, 1e-7, -0.0, 2.5e-310, 123456789.125, [1e22, {"a": -0.0}]]
    async with pool.acquire() as conn:
        for value in values:
            text = await conn.fetchval("SELECT $1::jsonb::text", json.dumps(value))
            back = json.loads(text)
            assert documents.canonical(documents.jsonb_value(value)) == documents.canonical(back), (
                value
            )


async def test_database_hashes_equal_python_hashes(
    api: Api, database_dsn: str, new_workspace: NewWorkspace
) -> None:
    ws = await new_workspace()
    action = await api.execute("bob", ws.id, "pause_agent", target="eng-code-1")
    payloads: list[Any] = []

    @SAMPLE
    @given(json_values)
    def collect(value: Any) -> None:
        payloads.append(documents.jsonb_value({"detail": value}))

    collect()
    action_id = uuid.UUID(action.action_id)
    conn = await asyncpg.connect(database_dsn)
    await init_connection(conn)  # jsonb as Python values, as the service's pool has it
    try:
        tx = conn.transaction()  # rolled back: the workspace keeps only its real events
        await tx.start()
        before = await conn.fetchrow(store.events.HEAD, ws.id)
        assert before is not None
        # Several appends of several events each, as the service makes them.
        for start in range(0, len(payloads), 7):
            batch = payloads[start : start + 7]
            await store.events.append(
                conn, ws.id, [(action_id, EVENT_TYPES[i % 4], p) for i, p in enumerate(batch)]
            )
        rows = await conn.fetch(
            "SELECT seq, action_id, event_type, payload, created_at, prev_hash, hash"
            " FROM action_events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq",
            ws.id,
            before["last_seq"],
        )
        assert len(rows) == len(payloads)
        prev = before["last_hash"]
        for row in rows:
            doc = documents.event_document(
                ws.id,
                row["seq"],
                row["action_id"],
                row["event_type"],
                row["payload"],
                row["created_at"],
            )
            assert row["prev_hash"] == prev
            assert row["hash"] == documents.event_hash(prev, doc)
            prev = row["hash"]
        report = await verify_workspace(conn, ws.id)
        # The chain verifies; the payloads appended here are not snapshots of the action,
        # which the row cross-check notices.
        assert {b.kind for b in report.breaks} == {"row_rewritten"}
        await tx.rollback()
    finally:
        await conn.close()


@QUICK
@given(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)))
def test_iso_is_the_canonical_timestamp_form(value: datetime) -> None:
    assert documents.iso(value) == value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
