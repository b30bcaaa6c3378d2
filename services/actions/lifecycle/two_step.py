"""The two-step form of an action's recorded life, for a kind whose effect reaches outside
PostgreSQL (docs/architecture.md §5.2, §5.7).

What an external system was told cannot be rolled back with a transaction, so the intent
to act is committed first: :func:`run` holds the action's session advisory lock on a
dedicated connection from before the pending row commits until the row is final; commits
the pending row and its event; then runs the effect, ``action_targets``, the
``completed`` status, the result and the events in ONE transaction. A failure rolls the
effect's rows back and marks the row ``failed``. A crash leaves the pending row, which
crash recovery fails once the lock is free, and a concurrent duplicate of the request
answers REQUEST_IN_PROGRESS meanwhile.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from services.actions import action_lock, errors, store
from services.actions.db import DATABASE_ERRORS, Conn, one
from services.actions.lifecycle import _shared
from services.actions.lifecycle._shared import Effect
from services.actions.model import ActionRecord, NewAction
from services.common.status import ServiceError

log = logging.getLogger("services.actions.lifecycle")

# One simple-query round trip; the key is an int, formatted into the text.
COMMIT_AND_UNLOCK = "COMMIT; SELECT pg_advisory_unlock({key})"


async def run(
    pool: asyncpg.Pool, new: NewAction, effect: Effect, lock_timeout_ms: int
) -> ActionRecord:
    """Record ``new`` as pending, run ``effect`` and finish the row; return the final row.

    Raises the original outcome's error on an idempotent repeat, the effect's
    ServiceError (row ``failed`` with it), or ACTION_EXECUTION_FAILED.
    """
    async with pool.acquire() as conn:
        return await run_on(conn, new, effect, lock_timeout_ms)


async def run_on(conn: Conn, new: NewAction, effect: Effect, lock_timeout_ms: int) -> ActionRecord:
    """:func:`run` on a connection the caller holds for the whole action."""
    key = action_lock.lock_key(new.action_id)
    unlocked = False
    try:
        pending = await store.actions.claim(conn, key, new, datetime.now(UTC))
        if pending is None:  # the key is taken
            return await _shared.first_outcome(conn, new)
        done = await _finish(conn, new, pending, effect, lock_timeout_ms, key)
        unlocked = True  # _finish returns only after COMMIT_AND_UNLOCK
        return done
    finally:
        if not unlocked:
            await _unlock(conn, key)


async def _unlock(conn: Conn, key: int) -> None:
    if conn.is_closed():
        return  # the session ended, and its advisory locks with it
    try:
        await conn.execute(action_lock.UNLOCK, key)
    except Exception:
        # Never hand a connection that still holds the lock back to the pool: the action
        # would look in progress forever. Closing the session releases the lock.
        log.warning("could not release an action lock; closing its connection", exc_info=True)
        conn.terminate()


async def _finish(
    conn: Conn,
    new: NewAction,
    pending: ActionRecord,
    effect: Effect,
    lock_timeout_ms: int,
    key: int,
) -> ActionRecord:
    """Run the effect, complete the row, commit and release the lock; the final row."""
    try:
        async with _shared.transaction(conn, lock_timeout_ms):
            done = await _complete(conn, new, pending, effect)
            await conn.execute(COMMIT_AND_UNLOCK.format(key=int(key)))
        _shared.completed(new)
        return done
    except ServiceError as err:
        await _fail(conn, new, err.message, err)
        raise
    except DATABASE_ERRORS:
        # The row stays unfinished; recovery (docs/architecture.md §5.7) fails it once our
        # lock is gone.
        raise
    except Exception as exc:
        message, correlation_id = _shared.describe(new, exc)
        failure = errors.execution_failed(str(new.action_id), message, correlation_id)
        await _fail(conn, new, message, failure)
        raise failure from exc


async def _complete(
    conn: Conn, new: NewAction, pending: ActionRecord, effect: Effect
) -> ActionRecord:
    """The effect, then in_progress → completed with its targets and events (in the
    caller's transaction); the final row.
    """
    started_at = datetime.now(UTC)
    outcome = await _shared.traced_effect(new, effect, conn)
    completed_at = datetime.now(UTC)
    result, events = _shared.completion(dict(pending), started_at, completed_at, outcome)
    return one(
        await store.actions.complete(
            conn, new, started_at, completed_at, result, outcome.changes, events
        ),
        "complete",
    )


async def _fail(conn: Conn, new: NewAction, message: str, err: ServiceError) -> None:
    _shared.failed(new, message)
    await store.actions.fail(conn, new.workspace_id, new.action_id, message, errors.to_json(err))
