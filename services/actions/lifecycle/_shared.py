"""What both forms of an action's recorded life share: the effect's transaction and span,
the documents of a completion, and how an outcome is logged and counted.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from services.actions import errors, idempotency, store
from services.actions.audit import documents
from services.actions.db import Conn
from services.actions.metrics import ACTION_OUTCOMES
from services.actions.model import ActionRecord, ActionStatus, NewAction, Outcome
from services.actions.store.events import Event
from services.common import tracing
from services.common.status import ServiceError

log = logging.getLogger("services.actions.lifecycle")

# The effect of an action: it locks, re-plans and writes inside the action's transaction.
Effect = Callable[[Conn], Awaitable[Outcome]]


@contextlib.asynccontextmanager
async def transaction(conn: Conn, lock_timeout_ms: int, then: str = "") -> AsyncIterator[None]:
    """``BEGIN`` with the deadline's ``lock_timeout`` (and the statement ``then``, which
    takes no input) in one round trip; ROLLBACK on error.

    The body ends it itself with its own ``COMMIT`` (one round trip with what follows it).
    """
    begin = f"BEGIN; SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"
    try:
        # Inside the try: ``then`` may fail (a lock timeout) with the transaction begun.
        await conn.execute(f"{begin}; {then}" if then else begin)
        yield
    except BaseException:
        if not conn.is_closed() and conn.is_in_transaction():
            try:
                await conn.execute("ROLLBACK")
            except Exception:
                log.warning("rollback failed; closing the connection", exc_info=True)
                conn.terminate()
        raise


async def traced_effect(new: NewAction, effect: Effect, conn: Conn) -> Outcome:
    """``effect(conn)``, inside an ``action.effect`` span while tracing is on."""
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
        outcome = await effect(conn)
        if span is not None:
            span.set_attribute("fleetward.changes", len(outcome.changes))
        return outcome


def completion(
    pending: dict[str, Any], started_at: datetime, completed_at: datetime, outcome: Outcome
) -> tuple[Any, list[Event]]:
    """The stored ``result`` and the events of a completion, after the pending event:
    in_progress, the effect's own events (a rollback's original), completed.
    """
    result = documents.jsonb_value(outcome.result)
    started = {**pending, "status": ActionStatus.IN_PROGRESS, "started_at": started_at}
    final = {**started, "status": ActionStatus.COMPLETED, "result": result}
    final["completed_at"] = completed_at
    done_event = documents.completed_event(
        final, ((c.kind, c.key, c.before, c.after) for c in outcome.changes)
    )
    return result, [documents.event_for(started), *outcome.events, done_event]


async def first_outcome(
    conn: Conn, new: NewAction, missing: ServiceError | None = None
) -> ActionRecord:
    """The outcome recorded under ``new``'s key by the request that took it (its row, or
    its error raised). When no row is recorded under the key, ``missing`` is raised; by
    default INTERNAL, for a key that is taken (its row cannot vanish).
    """
    existing = await store.actions.find_by_key(conn, new.workspace_id, new.subject, new.request_id)
    if existing is None:
        raise missing or errors.internal("idempotency conflict without a row")
    return await idempotency.replay(conn, existing, new.fingerprint)


def completed(new: NewAction) -> None:
    """Count and log a completed action."""
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


def failed(new: NewAction, message: str) -> None:
    """Count and log a failed action."""
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


def describe(new: NewAction, exc: BaseException) -> tuple[str, str]:
    """What the audit row and the caller are told of an unexpected failure, and its
    correlation id ("" when the message says all): nothing from inside the process; the
    log has the traceback.
    """
    if isinstance(exc, asyncpg.exceptions.LockNotAvailableError):
        return "timed out waiting for locked rows; no changes were applied", ""
    correlation_id = str(uuid.uuid4())
    log.error(
        "action %s failed (correlation id %s)",
        new.action_id,
        correlation_id,
        exc_info=exc,
        extra={"action_id": str(new.action_id), "correlation_id": correlation_id},
    )
    return (
        "an unexpected error stopped it; no changes were applied "
        f"(correlation id {correlation_id})",
        correlation_id,
    )
