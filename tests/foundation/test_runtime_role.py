"""The services' database role cannot rewrite history (docs/DECISIONS.md "Two database roles").

Every statement here is what someone holding the services' DATABASE_URL would try
against the audit trail: each is refused by PostgreSQL's privileges or by a guard
trigger, and changes nothing. The rows attacked are written by hand into a database of
this module's own (``isolated_pool``, as the administrator), migrated by the owner role
exactly as a deployment is.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.actions import store
from services.actions.audit import documents
from services.actions.db import init_connection
from services.common import names
from tests.foundation.test_smoke import TABLES as SCHEMA_TABLES

DENIED = asyncpg.InsufficientPrivilegeError
REFUSED = asyncpg.IntegrityConstraintViolationError

# Every table of the schema (the smoke test's list), in a stable order for the ids.
TABLES = tuple(sorted(SCHEMA_TABLES))
_NEW_ACTION = """
INSERT INTO action_audit_log (action_id, workspace_id, action_type, scope, target_id,
    reason, actor_user_id, status, result, request_id, request_fingerprint, completed_at)
VALUES ($1, $2, 'pause_agent', 'agent', 'eng-code-1', 'investigating cost spike', 'bob',
    $3, '{"count": 1}', $4, 'fingerprint', now())"""


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
async def pool(isolated_pool: asyncpg.Pool) -> asyncpg.Pool:
    """The administrator's pool on the module's database."""
    return isolated_pool


@pytest.fixture
async def ws(pool: asyncpg.Pool) -> uuid.UUID:
    """A workspace of this test's own (its chain head comes with it)."""
    workspace = uuid.uuid4()
    await pool.execute(
        "INSERT INTO workspaces (id, name) VALUES ($1, $2)", workspace, f"ws-{workspace.hex[:12]}"
    )
    return workspace


async def _action(pool: asyncpg.Pool, workspace: uuid.UUID, status: str) -> uuid.UUID:
    action_id = uuid.uuid4()
    await pool.execute(_NEW_ACTION, action_id, workspace, status, f"req-{action_id.hex}")
    return action_id


async def _append(conn: asyncpg.Connection, workspace: uuid.UUID, action_id: uuid.UUID) -> None:
    row = await conn.fetchrow(store.actions.GET, workspace, action_id)
    assert row is not None
    await store.events.append(conn, workspace, [documents.event_for(row)])


async def test_the_runtime_role_is_not_the_owner_of_anything(
    runtime: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    who = await runtime.fetchrow(
        "SELECT current_user AS name, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls "
        "FROM pg_roles AS r WHERE r.rolname = current_user"
    )
    assert who is not None
    assert [k for k in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolbypassrls") if who[k]] == []
    owned = await pool.fetch(
        "SELECT c.relname FROM pg_class AS c JOIN pg_roles AS r ON r.oid = c.relowner "
        "WHERE pg_has_role($1, r.oid, 'USAGE') AND c.relnamespace = 'public'::regnamespace",
        who["name"],
    )
    assert owned == []


@pytest.mark.parametrize("table", TABLES)
async def test_no_table_can_be_truncated_deleted_from_or_altered(
    runtime: asyncpg.Connection, table: str
) -> None:
    for statement in (
        f"TRUNCATE {table} CASCADE",
        f"DELETE FROM {table}",
        f"ALTER TABLE {table} DISABLE TRIGGER ALL",
        f"ALTER TABLE {table} OWNER TO current_user",
        f"DROP TABLE {table} CASCADE",
    ):
        with pytest.raises(DENIED):
            await runtime.execute(statement)


async def test_the_chain_cannot_be_forged_rewound_or_bypassed(
    runtime: asyncpg.Connection, pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    action_id = await _action(pool, ws, "completed")
    await _append(runtime, ws, action_id)  # the legitimate way works
    head = await pool.fetchrow(store.events.HEAD, ws)
    assert head is not None
    assert head["last_seq"] == 1

    for statement, args in (
        # Attack 1: a forged event appended by hand and the head moved onto it.
        (
            "INSERT INTO action_events (workspace_id, seq, action_id, event_type, payload, "
            "created_at, prev_hash, hash) VALUES ($1, 2, $2, 'action.completed', '{}', now(), "
            "$3, $3)",
            (ws, action_id, head["last_hash"]),
        ),
        ("UPDATE audit_chain_heads SET last_seq = 2 WHERE workspace_id = $1", (ws,)),
        # Attack 2: triggers off, the newest event deleted, the head rewound.
        ("SET session_replication_role = replica", ()),
        ("ALTER TABLE action_events DISABLE TRIGGER action_events_no_update", ()),
        ("DELETE FROM action_events WHERE workspace_id = $1 AND seq = 1", (ws,)),
        (
            "UPDATE audit_chain_heads SET last_seq = 0, last_hash = repeat('0', 64) "
            "WHERE workspace_id = $1",
            (ws,),
        ),
        ("UPDATE action_events SET payload = '{}' WHERE workspace_id = $1", (ws,)),
        # The functions are the owner's: they cannot be changed or replaced.
        ("ALTER FUNCTION fleetward_append_events SECURITY INVOKER", ()),
        ("DROP TRIGGER audit_chain_heads_guard ON audit_chain_heads", ()),
        ("CREATE TABLE public.shadow (x int)", ()),
        (
            "CREATE FUNCTION public.sha256(bytea) RETURNS bytea LANGUAGE sql AS 'SELECT $1'",
            (),
        ),
    ):
        with pytest.raises(DENIED):
            await runtime.execute(statement, *args)
    assert await pool.fetchrow(store.events.HEAD, ws) == head
    assert (
        await pool.fetchval("SELECT count(*) FROM action_events WHERE workspace_id = $1", ws) == 1
    )


async def test_a_temporary_table_cannot_stand_in_for_the_chain_head(
    runtime: asyncpg.Connection, pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    # A caller's temporary table named like ours comes first in its own search_path; the
    # append function pins its own, so the real head is locked and moved.
    await runtime.execute(
        "CREATE TEMP TABLE audit_chain_heads (workspace_id uuid, last_seq bigint, last_hash text)"
    )
    await runtime.execute("INSERT INTO audit_chain_heads VALUES ($1, 41, repeat('e', 64))", ws)
    action_id = await _action(pool, ws, "completed")
    await _append(runtime, ws, action_id)

    head = await pool.fetchrow(store.events.HEAD, ws)
    event = await pool.fetchrow(
        "SELECT seq, prev_hash, hash FROM action_events WHERE workspace_id = $1", ws
    )
    assert head is not None
    assert event is not None
    assert (event["seq"], event["prev_hash"]) == (1, documents.GENESIS_HASH)
    assert (head["last_seq"], head["last_hash"]) == (1, event["hash"])


async def test_a_completed_row_cannot_be_rewritten_on_its_way_to_rolled_back(
    runtime: asyncpg.Connection, pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    action_id = await _action(pool, ws, "completed")
    undo = await _action(pool, ws, "pending")
    before = await pool.fetchrow(store.actions.GET, ws, action_id)

    # Attack 3: the one transition out of a final status, used to change the result.
    with pytest.raises(REFUSED):
        await runtime.execute(
            "UPDATE action_audit_log SET status = 'rolled_back', rollback_action_id = $2, "
            "rolled_back_at = now(), result = '{\"count\": 0}' WHERE action_id = $1",
            action_id,
            undo,
        )
    # Columns outside the status machine are not even granted.
    for column in ("reason", "actor_user_id", "action_params", "created_at", "decision_id"):
        with pytest.raises(DENIED):
            await runtime.execute(
                f"UPDATE action_audit_log SET {column} = {column} WHERE action_id = $1",
                action_id,
            )
    assert await pool.fetchrow(store.actions.GET, ws, action_id) == before


async def test_targets_cannot_be_destroyed_or_added_by_hand(
    runtime: asyncpg.Connection, pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    action_id = await _action(pool, ws, "in_progress")

    # Attack 4: what rollback restores, destroyed; or extra rows written directly.
    for statement, args in (
        ("TRUNCATE action_targets", ()),
        ("DELETE FROM action_targets WHERE action_id = $1", (action_id,)),
        (
            "INSERT INTO action_targets (action_id, target_kind, target_key, before, after) "
            "VALUES ($1, 'agent', 'eng-code-1', '{}', '{}')",
            (action_id,),
        ),
        ("UPDATE action_targets SET before = '{}' WHERE action_id = $1", (action_id,)),
    ):
        with pytest.raises(DENIED):
            await runtime.execute(statement, *args)


async def test_an_append_cannot_store_one_payload_under_the_hash_of_another(
    runtime: asyncpg.Connection, pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    action_id = await _action(pool, ws, "completed")
    now = datetime.now(UTC)
    innocent = documents.doc_head(action_id, "action.completed", {"innocent": True}, now)
    for payload, head in (
        ({"poison": True}, innocent),  # the hash of one payload, another stored
        (
            {"innocent": True},
            documents.doc_head(action_id, "action.failed", {"innocent": True}, now),
        ),
        ({"innocent": True}, b"not json at all"),
        # Equal as jsonb values, not as what was hashed.
        ({"n": 1.0}, documents.doc_head(action_id, "action.completed", {"n": 1}, now)),
        ({"n": 1}, documents.doc_head(action_id, "action.completed", {"n": 1.0}, now)),
    ):
        with pytest.raises(asyncpg.PostgresError):
            await runtime.execute(
                store.events.APPEND,
                ws,
                [action_id],
                ["action.completed"],
                [payload],
                [now],
                [head],
                documents.doc_tail(ws),
                names.NOTIFY_CHANNEL,
            )
    assert (
        await pool.fetchval("SELECT count(*) FROM action_events WHERE workspace_id = $1", ws) == 0
    )


async def test_stored_values_stay_readable(
    runtime: asyncpg.Connection, pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    # A time Python cannot represent, or a payload that is not an object, would stop every
    # reader of the audit trail (audit verify, the watch feed).
    with pytest.raises(asyncpg.CheckViolationError):
        await runtime.execute(
            _NEW_ACTION.replace("now())", "'0044-03-15 BC')"), uuid.uuid4(), ws, "completed", "r-1"
        )
    action_id = await _action(pool, ws, "completed")
    now = datetime.now(UTC)
    with pytest.raises(asyncpg.CheckViolationError):
        await runtime.execute(
            store.events.APPEND,
            ws,
            [action_id],
            ["action.completed"],
            [5],
            [now],
            [documents.doc_head(action_id, "action.completed", 5, now)],
            documents.doc_tail(ws),
            names.NOTIFY_CHANNEL,
        )


async def test_an_append_takes_plain_arrays_and_the_present_time_only(
    runtime: asyncpg.Connection, pool: asyncpg.Pool, ws: uuid.UUID
) -> None:
    action_id = await _action(pool, ws, "completed")
    now = datetime.now(UTC)
    head = documents.doc_head(action_id, "action.completed", {"n": 1}, now)
    tail = documents.doc_tail(ws)
    for payloads in (
        # unnest ignores an array's bounds and flattens two dimensions: the row stored
        # would not be the one checked.
        """'[0:0]={"{\\"n\\": 2}"}'::jsonb[]""",
        """ARRAY[ARRAY['{"n": 2}'::jsonb]]""",
        """ARRAY['{"n": 1}'::jsonb, '{"n": 2}'::jsonb]""",  # longer than the other arrays
    ):
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await runtime.execute(
                "SELECT fleetward_append_events($1, ARRAY[$2::uuid], ARRAY['action.completed'], "
                f"{payloads}, ARRAY[$3::timestamptz], ARRAY[$4::bytea], $5, 'fleetward_events')",
                ws,
                action_id,
                now,
                head,
                tail,
            )
    # A time in the future would hide how long an event went unsigned.
    later = now + timedelta(hours=1)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="is not now"):
        await runtime.execute(
            store.events.APPEND,
            ws,
            [action_id],
            ["action.completed"],
            [{"n": 1}],
            [later],
            [documents.doc_head(action_id, "action.completed", {"n": 1}, later)],
            tail,
            names.NOTIFY_CHANNEL,
        )
    assert (
        await pool.fetchval("SELECT count(*) FROM action_events WHERE workspace_id = $1", ws) == 0
    )
