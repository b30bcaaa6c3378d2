"""The one-transaction record (migration 0007) against someone holding the services' role.

``fleetward_record_action_v1`` runs with the owner's rights: it inserts an action final,
writes its ``action_targets`` and appends its events read from the documents the caller
hashed. Each call here is what a holder of the services' DATABASE_URL would try through
it; each is refused and leaves nothing. The legitimate call, made by the store's own
function, works and verifies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.actions import store
from services.actions.audit import documents
from services.actions.audit.verify import verify_workspace
from services.actions.catalog import Change
from services.actions.db import init_connection
from services.actions.model import ActionStatus, NewAction
from services.actions.store.actions import Final
from services.common import names
from tests.actions.helpers import new_action

DENIED = asyncpg.InsufficientPrivilegeError


@pytest.fixture
async def runtime(isolated_runtime_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the services' runtime role."""
    conn = await asyncpg.connect(isolated_runtime_dsn)
    await init_connection(conn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def ws(isolated_pool: asyncpg.Pool) -> uuid.UUID:
    """A workspace of this test's own (its chain head comes with it)."""
    workspace = uuid.uuid4()
    await isolated_pool.execute(
        "INSERT INTO workspaces (id, name) VALUES ($1, $2)", workspace, f"ws-{workspace.hex[:12]}"
    )
    return workspace


def _new(workspace: uuid.UUID) -> NewAction:
    return new_action(workspace)


CHANGE = Change("agent", "eng-code-1", {"status": "active"}, {"status": "paused"}, "")


def _documents(new: NewAction, now: datetime) -> list[bytes]:
    """The three documents of a completion, as the service hashes them."""
    pending = new.row(ActionStatus.PENDING, now)
    final = {**pending, "status": ActionStatus.COMPLETED, "result": {"count": 1}}
    return [
        documents.doc_head(*documents.event_for(pending), now),
        documents.doc_head(
            *documents.completed_event(final, [("agent", "eng-code-1", {}, {})]), now
        ),
    ]


async def _call(
    conn: asyncpg.Connection,
    new: NewAction,
    heads: list[bytes],
    *,
    status: str = "completed",
    changes: tuple[Change, ...] = (CHANGE,),
    tail: bytes | None = None,
) -> Any:
    now = datetime.now(UTC)
    return await conn.fetchrow(
        store.actions.RECORD,
        *new.insert_args(),
        status,
        now,
        now,
        now,
        {"count": 1},
        None,
        None,
        [c.kind for c in changes],
        [c.key for c in changes],
        [c.before for c in changes],
        [c.after for c in changes],
        heads,
        documents.doc_tail(new.workspace_id) if tail is None else tail,
        names.NOTIFY_CHANNEL,
    )


async def _nothing_written(pool: asyncpg.Pool, ws: uuid.UUID) -> None:
    for table in ("action_audit_log", "action_events"):
        count = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE workspace_id = $1", ws)
        assert count == 0, table
    # No audit row, so no targets (their key references it) and no events.


def _doc(new: NewAction, **fields: Any) -> bytes:
    """A document head written by hand (``fields`` replace the canonical ones)."""
    document: dict[str, Any] = {
        "action_id": str(new.action_id),
        "created_at": documents.iso(datetime.now(UTC)),
        "event_type": "action.completed",
        "payload": {"status": "completed"},
    }
    document.update(fields)
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return text[:-1].encode() + b',"seq":'


async def test_the_legitimate_record_works_and_verifies(
    runtime: asyncpg.Connection, isolated_pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    new = _new(ws)
    now = datetime.now(UTC)
    pending = new.row(ActionStatus.PENDING, now)
    started = {**pending, "status": ActionStatus.IN_PROGRESS, "started_at": now}
    final = {
        **started,
        "status": ActionStatus.COMPLETED,
        "result": {"count": 1},
        "completed_at": now,
    }
    chained = [
        (documents.event_for(pending), now),
        (documents.event_for(started), now),
        (
            documents.completed_event(
                final, [(c.kind, c.key, c.before, c.after) for c in [CHANGE]]
            ),
            now,
        ),
    ]
    done = Final(ActionStatus.COMPLETED, now, now, {"count": 1})
    row = await store.actions.record(runtime, new, now, done, [CHANGE], chained)
    assert row is not None
    assert row.status == ActionStatus.COMPLETED
    # The same key again: nothing written, nothing returned.
    assert await store.actions.record(runtime, new, now, done, [CHANGE], chained) is None
    events = await isolated_pool.fetch(
        "SELECT event_type FROM action_events WHERE workspace_id = $1 ORDER BY seq", ws
    )
    assert [e["event_type"] for e in events] == [
        "action.pending",
        "action.in_progress",
        "action.completed",
    ]
    async with isolated_pool.acquire() as conn:
        assert (await verify_workspace(conn, ws)).breaks == []


async def test_the_append_from_documents_is_not_the_runtime_roles(
    runtime: asyncpg.Connection, isolated_pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    new = _new(ws)
    with pytest.raises(DENIED):
        await runtime.execute(
            "SELECT fleetward_append_documents_v1($1, $2, $3, $4, 'fleetward_events')",
            ws,
            [new.action_id],
            [_doc(new)],
            documents.doc_tail(ws),
        )
    await _nothing_written(isolated_pool, ws)


@pytest.mark.parametrize("status", ["pending", "in_progress", "denied", "rolled_back", "Completed"])
async def test_only_a_completed_or_failed_action_is_recorded(
    runtime: asyncpg.Connection, isolated_pool: asyncpg.Pool, ws: uuid.UUID, status: str
) -> None:
    new = _new(ws)
    with pytest.raises(asyncpg.InvalidParameterValueError):
        # No targets, so only the status check can refuse it.
        await _call(runtime, new, _documents(new, datetime.now(UTC)), status=status, changes=())
    await _nothing_written(isolated_pool, ws)


async def test_a_failed_action_has_no_targets(
    runtime: asyncpg.Connection, isolated_pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    new = _new(ws)
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await _call(runtime, new, _documents(new, datetime.now(UTC)), status="failed")
    await _nothing_written(isolated_pool, ws)


def _forged(new: NewAction) -> list[tuple[str, list[bytes], bytes | None]]:
    other = uuid.uuid4()
    now = datetime.now(UTC)
    return [
        ("upper-case action id", [_doc(new, action_id=str(new.action_id).upper())], None),
        (
            "time without microseconds",
            [_doc(new, created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))],
            None,
        ),
        ("time in another zone", [_doc(new, created_at=now.isoformat())], None),
        ("an hour ahead", [_doc(new, created_at=documents.iso(now + timedelta(hours=1)))], None),
        ("an extra key", [_doc(new, signed_by="auditor")], None),
        ("no payload", [_doc(new, payload=None)], None),
        ("a payload that is not an object", [_doc(new, payload=[1, 2])], None),
        ("no event type", [_doc(new, event_type=None)], None),
        ("not JSON", [b"not json at all"], None),
        ("another workspace's tail", [_doc(new)], documents.doc_tail(other)),
        (
            "a tail that adds a key",
            [_doc(new)],
            b',"extra":1' + documents.doc_tail(new.workspace_id),
        ),
        ("no documents", [], None),
    ]


@pytest.mark.parametrize("case", range(12))
async def test_a_forged_document_is_refused_and_leaves_nothing(
    runtime: asyncpg.Connection, isolated_pool: asyncpg.Pool, ws: uuid.UUID, case: int
) -> None:
    new = _new(ws)
    name, heads, tail = _forged(new)[case]
    with pytest.raises(asyncpg.PostgresError):
        await _call(runtime, new, heads, tail=tail)
    await _nothing_written(isolated_pool, ws)
    assert name


async def test_targets_are_added_only_to_the_row_this_transaction_inserted(
    isolated_pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    """The guard holds for the owner too: a completed row of an earlier transaction gets no
    more targets; the one inserted in the same transaction does (the record's own path).
    """
    new = _new(ws)
    insert = (
        "INSERT INTO action_audit_log (action_id, workspace_id, action_type, scope, target_id, "
        "reason, actor_user_id, status, request_id, request_fingerprint, completed_at) "
        "VALUES ($1, $2, 'pause_agent', 'agent', 'eng-code-1', 'r', 'bob', 'completed', $3, "
        "'f', now())"
    )
    target = (
        "INSERT INTO action_targets (action_id, target_kind, target_key, before, after) "
        "VALUES ($1, 'agent', 'eng-code-1', '{}', '{}')"
    )
    async with isolated_pool.acquire() as conn:
        await conn.execute(insert, new.action_id, ws, new.request_id)
        with pytest.raises(asyncpg.IntegrityConstraintViolationError):
            await conn.execute(target, new.action_id)
        fresh = uuid.uuid4()
        async with conn.transaction():
            await conn.execute(insert, fresh, ws, f"r-{fresh.hex}")
            await conn.execute(target, fresh)
    assert (
        await isolated_pool.fetchval(
            "SELECT count(*) FROM action_targets WHERE action_id = ANY($1)", [new.action_id, fresh]
        )
        == 1
    )


def _chained(new: NewAction, now: datetime) -> list[tuple[Any, datetime]]:
    """The three events of ``new`` completed, each with its time (what the service sends)."""
    pending = new.row(ActionStatus.PENDING, now)
    started = {**pending, "status": ActionStatus.IN_PROGRESS, "started_at": now}
    final = {**started, "status": ActionStatus.COMPLETED, "result": {"count": 1}}
    final["completed_at"] = now
    targets = [(c.kind, c.key, c.before, c.after) for c in [CHANGE]]
    events = [documents.event_for(pending), documents.event_for(started)]
    return [(e, now) for e in [*events, documents.completed_event(final, targets)]]


async def _record(conn: asyncpg.Connection, new: NewAction, extra: list[Any]) -> Any:
    now = datetime.now(UTC)
    done = Final(ActionStatus.COMPLETED, now, now, {"count": 1})
    return await store.actions.record(conn, new, now, done, [CHANGE], [*_chained(new, now), *extra])


async def _snapshot(pool: asyncpg.Pool, action_id: uuid.UUID) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT * FROM action_audit_log WHERE action_id = $1", action_id)
    assert row is not None
    return documents.snapshot(row)


@pytest.mark.parametrize("event_type", ["action.rolled_back", "action.completed"])
async def test_a_record_appends_no_event_of_another_action(
    runtime: asyncpg.Connection, isolated_pool: asyncpg.Pool, ws: uuid.UUID, event_type: str
) -> None:
    """(Review finding, shown failing on the first form of 0007.) A second action's record
    that also says "the first was rolled back" (the first's own snapshot as payload, so its
    row still matches its newest event) would rewrite its history unnoticed.
    """
    victim = _new(ws)
    assert await _record(runtime, victim, []) is not None
    before = await isolated_pool.fetchval("SELECT count(*) FROM action_events")
    snap = await _snapshot(isolated_pool, victim.action_id)
    snap["status"] = event_type.removeprefix("action.")
    forged = ((victim.action_id, event_type, snap), datetime.now(UTC))
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await _record(runtime, _new(ws), [forged])
    assert await isolated_pool.fetchval("SELECT count(*) FROM action_events") == before


async def test_a_record_appends_no_event_of_another_workspaces_action(
    runtime: asyncpg.Connection, isolated_pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    """(Review finding.) Workspace A's chain naming workspace B's action: A's watchers would
    be streamed B's action."""
    elsewhere = uuid.uuid4()
    await isolated_pool.execute(
        "INSERT INTO workspaces (id, name) VALUES ($1, $2)", elsewhere, f"ws-{elsewhere.hex[:12]}"
    )
    victim = _new(elsewhere)
    assert await _record(runtime, victim, []) is not None
    snap = await _snapshot(isolated_pool, victim.action_id)
    forged = ((victim.action_id, "action.completed", snap), datetime.now(UTC))
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await _record(runtime, _new(ws), [forged])
    await _nothing_written(isolated_pool, ws)


async def test_an_event_says_its_own_status(
    runtime: asyncpg.Connection, isolated_pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    """An ``action.completed`` event whose payload says ``failed`` is refused."""
    new = _new(ws)
    now = datetime.now(UTC)
    chained = _chained(new, now)
    (action_id, _, payload), at = chained[-1]
    chained[-1] = ((action_id, "action.completed", {**payload, "status": "failed"}), at)
    done = Final(ActionStatus.COMPLETED, now, now, {"count": 1})
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await store.actions.record(runtime, new, now, done, [CHANGE], chained)
    await _nothing_written(isolated_pool, ws)
