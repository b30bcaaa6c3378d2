"""The one-transaction form of an action's recorded life, for every kind whose effect is
rows in PostgreSQL (docs/architecture.md §5.2).

:func:`run` opens ONE transaction (``BEGIN`` with the deadline's ``lock_timeout``), runs the
effect (it locks its rows, plans again and writes), records the action in one call (its
row inserted ``completed``, its ``action_targets``, and its pending, in_progress and
completed events with the chain head) and commits. Nothing of the action is visible
before the commit, and a crash leaves nothing of it: no orphan to recover.

The transaction takes the idempotency key's advisory lock in its ``BEGIN`` round trip
(:func:`action_lock.key_lock`), and the row's insert claims the key. A concurrent
duplicate of the request waits on that lock until the first ends; it then acts on what
the first left (usually nothing), finds the key taken at its insert, rolls back and
answers the first outcome. An effect that fails rolls back; a ``failed`` row (pending and
failed events) is then written in a transaction of its own that must take the key's lock
without waiting: if the key was recorded meanwhile, the answer is that outcome; if
another request under the key is still running (a duplicate whose wait for it timed
out), REQUEST_IN_PROGRESS, and nothing is recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from services.actions import action_lock, errors, store
from services.actions.audit import documents
from services.actions.db import DATABASE_ERRORS, Conn
from services.actions.lifecycle import _shared
from services.actions.lifecycle._shared import Effect
from services.actions.model import ActionRecord, ActionStatus, NewAction
from services.actions.store.actions import Final
from services.common.status import ServiceError


class _KeyTaken(Exception):
    """The request's key was recorded by another request first (rolls the effect back)."""


async def run(
    pool: asyncpg.Pool, new: NewAction, effect: Effect, lock_timeout_ms: int
) -> ActionRecord:
    """Run ``effect`` and record ``new`` with it in one transaction; the final row.

    Raises the first outcome's error when the key was taken first, the effect's
    ServiceError (a ``failed`` row recorded with it), or ACTION_EXECUTION_FAILED.
    """
    key = action_lock.key_lock(new.workspace_id, new.subject, new.request_id)
    async with pool.acquire() as conn:
        created_at = datetime.now(UTC)
        try:
            async with _shared.transaction(conn, lock_timeout_ms, action_lock.lock_key_sql(key)):
                done = await _complete(conn, new, created_at, effect)
                if done is None:
                    raise _KeyTaken
                await conn.execute("COMMIT")
        except _KeyTaken:
            return await _shared.first_outcome(conn, new)
        except ServiceError as err:
            return await _fail(conn, new, key, created_at, err.message, err)
        except DATABASE_ERRORS:
            raise  # nothing was recorded: a retry under the same key starts afresh
        except Exception as exc:
            message, correlation_id = _shared.describe(new, exc)
            failure = errors.execution_failed(str(new.action_id), message, correlation_id)
            return await _fail(conn, new, key, created_at, message, failure, exc)
        _shared.completed(new)
        return done


async def _complete(
    conn: Conn, new: NewAction, created_at: datetime, effect: Effect
) -> ActionRecord | None:
    """The effect, then the row, its targets and its events (in the caller's transaction);
    the final row, or None when the key is taken.
    """
    pending = new.row(ActionStatus.PENDING, created_at)
    started_at = datetime.now(UTC)
    outcome = await _shared.traced_effect(new, effect, conn)
    completed_at = datetime.now(UTC)
    result, completion = _shared.completion(pending, started_at, completed_at, outcome)
    # Every event is appended now, so each is stamped now (the database refuses an event
    # time more than 5 minutes from its clock); the payloads keep the row's own times.
    chained = [(event, completed_at) for event in [documents.event_for(pending), *completion]]
    final = Final(ActionStatus.COMPLETED, started_at, completed_at, result)
    return await store.actions.record(conn, new, created_at, final, outcome.changes, chained)


async def _fail(
    conn: Conn,
    new: NewAction,
    key: int,
    created_at: datetime,
    message: str,
    err: ServiceError,
    cause: BaseException | None = None,
) -> ActionRecord:
    """Record ``new`` as ``failed`` with ``err`` after its rollback, and raise ``err``; the
    first outcome instead when the key was recorded meanwhile, REQUEST_IN_PROGRESS when
    another request under it still runs.
    """
    async with conn.transaction():
        # Not taken: another request under the key holds it (it is recorded, or it runs).
        taken = await conn.fetchval(action_lock.TRY_KEY_LOCK, key)
        failed = await _record_failed(conn, new, created_at, message, err) if taken else None
    if failed is not None:
        _shared.failed(new, message)
        raise err from cause
    return await _shared.first_outcome(conn, new, errors.request_in_progress(new.request_id, None))


async def _record_failed(
    conn: Conn, new: NewAction, created_at: datetime, message: str, err: ServiceError
) -> ActionRecord | None:
    """Insert ``new`` as ``failed`` with its two events; None when the key is taken."""
    details = errors.to_json(err)
    completed_at = datetime.now(UTC)
    pending = new.row(ActionStatus.PENDING, created_at)
    failed = {
        **pending,
        "status": ActionStatus.FAILED,
        "error_message": message,
        "error_details": documents.jsonb_value(details),
        "completed_at": completed_at,
    }
    chained = [(documents.event_for(pending), completed_at)]
    chained.append((documents.event_for(failed), completed_at))
    final = Final(ActionStatus.FAILED, None, completed_at, None, message, details)
    return await store.actions.record(conn, new, created_at, final, (), chained)
