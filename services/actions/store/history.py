"""The audit rows as read back: ListActions' pages, the unfinished rows recovery looks at,
the expiring-pause job's claims, and what ``audit verify`` reads of ``action_audit_log``
and ``action_targets`` (in its snapshot, as text: the verifier parses jsonb itself).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.actions.db import Conn, batches
from services.actions.model import ActionRecord

# ListActions' WHERE holds only the filters a request sets. With every filter written as
# "$n IS NULL OR column = $n", PostgreSQL's generic plan (chosen after five executions of
# the prepared statement) cannot use the index of the one filter that is set: a filter
# matching nothing then scans the workspace's whole history. At most 2^6 statement
# texts exist, each prepared once per connection.
_FILTERS = (
    ("action_type", "action_type = ${n}"),
    ("status", "status = ${n}"),
    ("actor_subject", "actor_user_id = ${n}"),
    ("target_id", "target_id = ${n}"),
    ("created_after", "created_at >= ${n}"),
    ("created_before", "created_at < ${n}"),
)
# Rows older than the given age are candidates: younger ones are most likely still running.
UNFINISHED = """
SELECT action_id, workspace_id FROM action_audit_log
WHERE status IN ('pending', 'in_progress') AND created_at < clock_timestamp() - $1::interval
ORDER BY created_at
LIMIT 1000"""
# NO KEY: a concurrent rollback inserting a row that references it is not blocked, while a
# rollback locking it waits; SKIP LOCKED: exactly one replica claims it.
CLAIM_PAUSE = """
SELECT action_id, workspace_id, scope, target_id FROM action_audit_log
WHERE workspace_id = $1 AND action_id = $2
FOR NO KEY UPDATE SKIP LOCKED"""
COUNT_BY_PREFIX = """
SELECT count(*) FROM action_audit_log
WHERE workspace_id = $1 AND actor_user_id = $2 AND request_id LIKE $3"""
# The columns of documents.snapshot, nothing else.
_SNAPSHOT_COLUMNS = """
action_id, workspace_id, action_type, scope, target_id, action_params::text AS action_params,
reason, status, result::text AS result, error_message, actor_user_id, actor_role,
can_rollback, rollback_action_id, rollback_of_action_id, policy_version, decision_id,
trace_id, request_id, created_at, started_at, completed_at, rolled_back_at"""
SNAPSHOT_ROWS = f"SELECT {_SNAPSHOT_COLUMNS} FROM action_audit_log WHERE workspace_id = $1"
SNAPSHOT_ROW = (
    f"SELECT {_SNAPSHOT_COLUMNS} FROM action_audit_log WHERE workspace_id = $1 AND action_id = $2"
)
WORKSPACE_TARGETS = """
SELECT t.action_id, t.target_kind, t.target_key, t.before::text AS before,
       t.after::text AS after
FROM action_targets AS t JOIN action_audit_log AS a USING (action_id)
WHERE a.workspace_id = $1 ORDER BY t.action_id"""
TARGETS_TEXT = """
SELECT target_kind, target_key, before::text AS before, after::text AS after
FROM action_targets WHERE action_id = $1"""


def page_statement(
    workspace_id: uuid.UUID,
    filters: Mapping[str, Any],
    cursor: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """The ListActions statement for the filters that are set (falsy values are unset),
    newest first after ``cursor``; and its arguments.
    """
    args: list[Any] = [workspace_id]
    where = ["workspace_id = $1"]
    for name, clause in _FILTERS:
        if filters.get(name):
            args.append(filters[name])
            where.append(clause.format(n=len(args)))
    if cursor is not None:
        args.extend(cursor)
        where.append(f"(created_at, action_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    sql = (
        "SELECT * FROM action_audit_log WHERE "
        + " AND ".join(where)
        + f" ORDER BY created_at DESC, action_id DESC LIMIT ${len(args)}"
    )
    return sql, args


async def page(
    conn: Conn | asyncpg.Pool,
    workspace_id: uuid.UUID,
    filters: Mapping[str, Any],
    cursor: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ActionRecord]:
    """Up to ``limit`` rows matching ``filters``, newest first, after ``cursor``."""
    sql, args = page_statement(workspace_id, filters, cursor, limit)
    return [ActionRecord.from_row(r) for r in await conn.fetch(sql, *args)]


async def unfinished(conn: Conn, min_age_s: float) -> list[asyncpg.Record]:
    """Up to 1,000 pending/in_progress rows older than ``min_age_s`` (oldest first)."""
    return list(await conn.fetch(UNFINISHED, timedelta(seconds=min_age_s)))


async def claim_pause(
    conn: Conn, workspace_id: uuid.UUID, action_id: uuid.UUID
) -> asyncpg.Record | None:
    """Lock an expiring pause's row for this transaction; None when another replica has it."""
    row: asyncpg.Record | None = await conn.fetchrow(CLAIM_PAUSE, workspace_id, action_id)
    return row


async def count_requests(
    conn: Conn, workspace_id: uuid.UUID, subject: str, request_prefix: str
) -> int:
    """How many rows ``subject`` recorded with a request id starting with ``request_prefix``."""
    pattern = request_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return int(await conn.fetchval(COUNT_BY_PREFIX, workspace_id, subject, pattern))


def snapshot_rows(conn: Conn, workspace_id: uuid.UUID) -> AsyncIterator[list[asyncpg.Record]]:
    """Every row's snapshot columns, in batches."""
    return batches(conn, SNAPSHOT_ROWS, workspace_id)


async def snapshot_row(
    conn: Conn, workspace_id: uuid.UUID, action_id: uuid.UUID
) -> asyncpg.Record | None:
    """One row's snapshot columns."""
    row: asyncpg.Record | None = await conn.fetchrow(SNAPSHOT_ROW, workspace_id, action_id)
    return row


def workspace_targets(conn: Conn, workspace_id: uuid.UUID) -> AsyncIterator[list[asyncpg.Record]]:
    """Every ``action_targets`` row of the workspace's actions, grouped by action, in batches."""
    return batches(conn, WORKSPACE_TARGETS, workspace_id)


async def targets_text(conn: Conn, action_id: uuid.UUID) -> list[asyncpg.Record]:
    """One action's ``action_targets`` rows, jsonb as text."""
    return list(await conn.fetch(TARGETS_TEXT, action_id))
