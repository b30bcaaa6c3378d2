"""Bulk loading for the growth table: audit rows by the million, indexes built afterwards.

Inserting rows into a table whose nine indexes are maintained row by row (a random
``action_id`` primary key among them) took 77-125 µs a row on this machine (100,000 rows
in 7.7-12.5 s); inserting into the bare table and building each index once afterwards
took 36 µs a row for a million (35.6 s). The indexes are the schema's own: their
definitions are read back from the catalog, dropped and re-created, foreign keys
included (re-validated). The one difference from a table grown by the service: a freshly
built B-tree is packed to its fill factor (90 %), while one grown by inserts in the
middle (the random ``action_id``) is less dense; a 50-row page read touches one or two
leaf pages either way.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.actions.db import Conn

# The audit rows of the bench's seeding (bench/seed.py too: completed actions spread over targets,
# types and actors, one second apart, newest first), numbered ``$2..$3`` from a fixed
# ``$5`` so that a table can grow in steps and stay one history.
AUDIT_ROWS = """
INSERT INTO action_audit_log (
    action_id, workspace_id, action_type, scope, target_id, action_params, reason,
    actor_user_id, actor_role, status, result, request_id, request_fingerprint,
    policy_version, decision_id, created_at, started_at, completed_at, can_rollback)
SELECT gen_random_uuid(), $1,
       (ARRAY['pause_agent', 'resume_agent', 'set_budget', 'restart_agent'])[1 + i % 4],
       'agent', 'agent-' || (i % $4), '{"duration_minutes": 30}'::jsonb, 'bulk load',
       'user-' || (i % 50), 'operator', 'completed', '{"count": 1}'::jsonb,
       'bulk-' || i, md5(i::text), 'bench', md5(i::text),
       t, t, t, true
FROM generate_series($2::bigint, $3::bigint) AS i,
     LATERAL (SELECT $5::timestamptz - make_interval(secs => i)) AS ts(t)"""
# Every index of the tables (a primary key or unique constraint is re-created as one).
_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, i.indrelid::regclass::text AS tbl,
       pg_get_indexdef(i.indexrelid) AS definition,
       c.conname AS constraint_name, pg_get_constraintdef(c.oid) AS constraint_definition
FROM pg_index i
LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('p', 'u')
     AND c.conrelid = i.indrelid
WHERE i.indrelid = ANY($1::regclass[])
ORDER BY i.indexrelid"""
# Every foreign key from or to the tables.
_FOREIGN_KEYS = """
SELECT conname, conrelid::regclass::text AS tbl, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE contype = 'f' AND (conrelid = ANY($1::regclass[]) OR confrelid = ANY($1::regclass[]))
ORDER BY oid"""


@dataclass(frozen=True)
class _Index:
    name: str
    table: str
    definition: str
    constraint: str | None
    constraint_definition: str | None


@contextlib.asynccontextmanager
async def indexes_built_after(conn: Conn, tables: Sequence[str]) -> AsyncIterator[None]:
    """Drop every index and foreign key of ``tables``; re-create them all on exit.

    Args:
        conn: An administrator's connection to the scratch database.
        tables: The tables being loaded.

    Yields:
        Nothing: load the tables inside the block. They are analysed on exit.
    """
    indexes = [
        _Index(
            r["name"], r["tbl"], r["definition"], r["constraint_name"], r["constraint_definition"]
        )
        for r in await conn.fetch(_INDEXES, list(tables))
    ]
    foreign = list(await conn.fetch(_FOREIGN_KEYS, list(tables)))
    for key in foreign:
        await conn.execute(f'ALTER TABLE {key["tbl"]} DROP CONSTRAINT "{key["conname"]}"')
    for index in indexes:
        if index.constraint is not None:
            await conn.execute(f'ALTER TABLE {index.table} DROP CONSTRAINT "{index.constraint}"')
        else:
            await conn.execute(f"DROP INDEX {index.name}")
    yield
    await conn.execute("SET maintenance_work_mem = '256MB'")
    for index in indexes:
        if index.constraint is not None:
            await conn.execute(
                f'ALTER TABLE {index.table} ADD CONSTRAINT "{index.constraint}" '
                f"{index.constraint_definition}",
                timeout=3600,
            )
        else:
            await conn.execute(index.definition, timeout=3600)
    for key in foreign:
        await conn.execute(
            f'ALTER TABLE {key["tbl"]} ADD CONSTRAINT "{key["conname"]}" {key["definition"]}',
            timeout=3600,
        )
    await conn.execute("RESET maintenance_work_mem")
    for table in tables:
        await conn.execute(f"ANALYZE {table}", timeout=3600)


async def grow_audit_rows(
    conn: Conn,
    workspace: uuid.UUID,
    have: int,
    want: int,
    targets: int,
    newest: datetime,
) -> None:
    """Grow the workspace's bulk audit rows from ``have`` to ``want`` (indexes rebuilt).

    Args:
        conn: An administrator's connection to the scratch database.
        workspace: The workspace (it exists).
        have: Rows already loaded by this function (0 the first time).
        want: Rows wanted in all.
        targets: Distinct target ids (``agent-0`` …) the rows are spread over.
        newest: The time of row 0; row ``i`` is ``i`` seconds older.
    """
    if want <= have:
        return
    async with indexes_built_after(conn, ["action_audit_log"]):
        await conn.execute(AUDIT_ROWS, workspace, have, want - 1, targets, newest, timeout=7200)
