"""The recorded part of an action's life: pending → effect → final (docs/architecture.md §5.2).

Crash recovery relies on it too (docs/architecture.md §5.7).

:func:`run` holds the action's session advisory lock on a dedicated connection from
before the pending row commits until the row is final; commits the pending row and its
event first; then runs the effect, ``action_targets``, the ``completed`` status, the
result and the events in ONE transaction. A failure rolls the effect back and marks
the row ``failed``. Callers run it shielded from cancellation (:class:`TaskSet`).
With tracing on, the effect is an ``action.effect`` span (its statements inside it).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg

from services.actions import action_lock, errors, idempotency, store
from services.actions.audit import documents
from services.actions.db import DATABASE_ERRORS, Conn, one
from services.actions.metrics import ACTION_OUTCOMES
from services.actions.model import ActionRecord, ActionStatus, NewAction, Outcome
from services.common import tracing
from services.common.status import ServiceError

log = logging.getLogger(__name__)
T = TypeVar("T")

# One simple-query round trip; the key is an int, formatted into the text.
COMMIT_AND_UNLOCK = "COMMIT; SELECT pg_advisory_unlock({key})"


Effect = Callable[[Conn, ActionRecord], Awaitable[Outcome]]


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
        if pending is None:
            existing = await store.actions.find_by_key(
                conn, new.workspace_id, new.subject, new.request_id
            )
            if existing is None:  # pragma: no cover - the conflicting row cannot vanish
                raise errors.internal("idempotency conflict without a row")
            return await idempotency.replay(conn, existing, new.fingerprint)
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


@contextlib.asynccontextmanager
async def _transaction(conn: Conn, lock_timeout_ms: int) -> AsyncIterator[None]:
    """``BEGIN`` with the deadline's ``lock_timeout`` in one round trip; ROLLBACK on error.

    The body ends it itself with :data:`COMMIT_AND_UNLOCK` (one round trip for both).
    """
    await conn.execute(f"BEGIN; SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
    try:
        yield
    except BaseException:
        if not conn.is_closed() and conn.is_in_transaction():
            try:
                await conn.execute("ROLLBACK")
            except Exception:
                log.warning("rollback failed; closing the connection", exc_info=True)
                conn.terminate()
        raise


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
        async with _transaction(conn, lock_timeout_ms):
            done = await _complete(conn, new, pending, effect)
            await conn.execute(COMMIT_AND_UNLOCK.format(key=int(key)))
        ACTION_OUTCOMES.labels(new.action_type, ActionStatus.COMPLETED).inc()
        log.info(
            "action %s completed",
            new.action_type,
            extra={
                "action_id": str(new.action_id),
                "request_id": new.request_id,
                "decision_id": new.decision_id,
                "workspace_id": str(new.workspace_id),
                "subject": new.subject,
                "event": "action.completed",
            },
        )
        return done
    except ServiceError as err:
        await _fail(conn, new, err.message, err)
        raise
    except DATABASE_ERRORS:
        # The row stays unfinished; recovery (docs/architecture.md §5.7) fails it once our
        # lock is gone.
        raise
    except Exception as exc:
        message, correlation_id = _describe(exc)
        if correlation_id:
            log.error(
                "action %s failed (correlation id %s)",
                new.action_id,
                correlation_id,
                exc_info=exc,
                extra={"action_id": str(new.action_id), "correlation_id": correlation_id},
            )
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
    outcome = await _traced_effect(new, effect, conn, pending)
    completed_at = datetime.now(UTC)
    result = documents.jsonb_value(outcome.result)
    started = {**dict(pending), "status": ActionStatus.IN_PROGRESS, "started_at": started_at}
    final = {**started, "status": ActionStatus.COMPLETED, "result": result}
    final["completed_at"] = completed_at
    changes = outcome.changes
    done_event = documents.completed_event(
        final, ((c.kind, c.key, c.before, c.after) for c in changes)
    )
    events = [documents.event_for(started), *outcome.events, done_event]
    return one(
        await store.actions.complete(conn, new, started_at, completed_at, result, changes, events),
        "complete",
    )


async def _traced_effect(
    new: NewAction, effect: Effect, conn: Conn, pending: ActionRecord
) -> Outcome:
    """``effect(conn, pending)``, inside an ``action.effect`` span while tracing is on."""
    with tracing.span("action.effect") as span:
        if span is not None:
            span.set_attributes(
                {
                    "fleetward.action_id": str(new.action_id),
                    "fleetward.action_type": new.action_type,
                    "fleetward.workspace_id": str(new.workspace_id),
                    "fleetward.scope": new.scope,
                }
            )
        outcome = await effect(conn, pending)
        if span is not None:
            span.set_attribute("fleetward.changes", len(outcome.changes))
        return outcome


async def _fail(conn: Conn, new: NewAction, message: str, err: ServiceError) -> None:
    ACTION_OUTCOMES.labels(new.action_type, ActionStatus.FAILED).inc()
    log.warning(
        "action %s failed: %s",
        new.action_type,
        message,
        extra={
            "action_id": str(new.action_id),
            "request_id": new.request_id,
            "decision_id": new.decision_id,
            "workspace_id": str(new.workspace_id),
            "event": "action.failed",
        },
    )
    await store.actions.fail(conn, new.workspace_id, new.action_id, message, errors.to_json(err))


def _describe(exc: BaseException) -> tuple[str, str]:
    """What the audit row and the caller are told, and the correlation id ("" when the
    message says all): nothing from inside the process, the log has the traceback.
    """
    if isinstance(exc, asyncpg.exceptions.LockNotAvailableError):
        return "timed out waiting for locked rows; no changes were applied", ""
    correlation_id = str(uuid.uuid4())
    return (
        "an unexpected error stopped it; no changes were applied "
        f"(correlation id {correlation_id})",
        correlation_id,
    )
