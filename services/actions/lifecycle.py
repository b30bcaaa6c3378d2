"""The recorded part of an action's life (ARCHITECTURE §5.2, §5.7): pending → effect → final.

:func:`run` holds the action's session advisory lock on a dedicated connection from
before the pending row commits until the row is final; commits the pending row and its
event first; then runs the effect, ``action_targets``, the ``completed`` status, the
result and the events in ONE transaction. A failure rolls the effect back and marks
the row ``failed``. Callers run it shielded from cancellation (:class:`TaskSet`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from services.actions import audit, errors, idempotency
from services.actions.catalog import Change
from services.actions.db import DATABASE_ERRORS, Conn, one
from services.actions.metrics import ACTION_OUTCOMES
from services.common.status import FleetwardError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class NewAction:
    """The audit row to record."""

    action_id: uuid.UUID
    workspace_id: uuid.UUID
    action_type: str
    scope: str
    target_id: str
    params: dict[str, Any]
    reason: str
    subject: str
    roles: tuple[str, ...]
    can_rollback: bool
    request_id: str
    fingerprint: str
    policy_version: str
    decision_id: str
    rollback_of_action_id: uuid.UUID | None = None

    def insert_args(self) -> tuple[Any, ...]:
        """Arguments $1..$15 of INSERT_PENDING(_LOCKED) / INSERT_DENIED."""
        return (
            self.action_id,
            self.workspace_id,
            self.action_type,
            self.scope,
            self.target_id,
            self.params,
            self.reason,
            self.subject,
            ",".join(self.roles),
            self.can_rollback,
            self.rollback_of_action_id,
            self.request_id,
            self.fingerprint,
            self.policy_version,
            self.decision_id,
        )

    def preview(self, result: dict[str, Any]) -> dict[str, Any]:
        """The row as it would be recorded (validate_only): nothing is written."""
        return {
            "action_id": None,
            "workspace_id": self.workspace_id,
            "action_type": self.action_type,
            "scope": self.scope,
            "target_id": self.target_id,
            "action_params": self.params,
            "reason": self.reason,
            "actor_user_id": self.subject,
            "actor_role": ",".join(self.roles),
            "status": "pending",
            "result": result,
            "error_message": None,
            "can_rollback": self.can_rollback,
            "rollback_action_id": None,
            "rollback_of_action_id": self.rollback_of_action_id,
            "policy_version": self.policy_version,
            "decision_id": self.decision_id,
            "request_id": self.request_id,
            "created_at": None,
            "started_at": None,
            "completed_at": None,
            "rolled_back_at": None,
        }


@dataclass
class Outcome:
    """What an effect did: the ``result`` and any events of other rows it changed."""

    result: dict[str, Any]
    events: list[tuple[uuid.UUID, str, dict[str, Any]]] = field(default_factory=list)
    # action_targets rows to write with the completed status (one statement with it).
    changes: Sequence[Change] = ()


Effect = Callable[[Conn, asyncpg.Record], Awaitable[Outcome]]


async def insert_targets(conn: Conn, action_id: uuid.UUID, changes: Sequence[Change]) -> None:
    """All before/after rows of an action in one statement."""
    if not changes:
        return
    await conn.execute(
        audit.INSERT_TARGETS,
        action_id,
        [c.kind for c in changes],
        [c.key for c in changes],
        [c.before for c in changes],
        [c.after for c in changes],
    )


async def record_denied(
    pool: asyncpg.Pool, new: NewAction, error: FleetwardError
) -> asyncpg.Record | None:
    """Record a policy denial (status ``denied``) with its event, or replay an earlier claim."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(
                audit.INSERT_DENIED, *new.insert_args(), error.message, errors.to_json(error)
            )
            if row is not None:
                await audit.append_events(conn, new.workspace_id, [audit.event_for(row)])
                ACTION_OUTCOMES.labels(new.action_type, "denied").inc()
                return None
        existing = await idempotency.find(conn, new.workspace_id, new.subject, new.request_id)
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish
            raise errors.internal("idempotency conflict without a row")
        return await idempotency.replay(conn, existing, new.fingerprint)


async def run(
    pool: asyncpg.Pool, new: NewAction, effect: Effect, lock_timeout_ms: int
) -> asyncpg.Record:
    """Record ``new`` as pending, run ``effect`` and finish the row; return the final row.

    Raises the original outcome's error on an idempotent repeat, the effect's
    FleetwardError (row ``failed`` with it), or ACTION_EXECUTION_FAILED.
    """
    async with pool.acquire() as conn:
        return await run_on(conn, new, effect, lock_timeout_ms)


async def run_on(
    conn: Conn, new: NewAction, effect: Effect, lock_timeout_ms: int
) -> asyncpg.Record:
    """:func:`run` on a connection the caller holds for the whole action.

    Round trips: the pending transaction is BEGIN, one statement that takes the advisory
    lock, claims the key and locks the chain head, the events, COMMIT; the final one is
    BEGIN, in_progress (with lock_timeout), the effect, completed + targets + chain head,
    the events, COMMIT; then the unlock.
    """
    key = idempotency.lock_key(new.action_id)
    try:
        async with conn.transaction():
            pending = await conn.fetchrow(audit.INSERT_PENDING_LOCKED, *new.insert_args(), key)
            if pending is not None:
                await _append(conn, new, pending, [audit.event_for(pending)])
        if pending is None:
            existing = await idempotency.find(conn, new.workspace_id, new.subject, new.request_id)
            if existing is None:  # pragma: no cover - the conflicting row cannot vanish
                raise errors.internal("idempotency conflict without a row")
            return await idempotency.replay(conn, existing, new.fingerprint)
        return await _finish(conn, new, effect, lock_timeout_ms)
    finally:
        await _unlock(conn, key)


async def _append(
    conn: Conn,
    new: NewAction,
    locked: asyncpg.Record,
    events: Sequence[tuple[uuid.UUID, str, dict[str, Any]]],
) -> None:
    """Append events after the chain head ``locked`` carries (``chain_last_*`` columns)."""
    await audit.append_at_head(
        conn, new.workspace_id, locked["chain_last_seq"], locked["chain_last_hash"], events
    )


async def _unlock(conn: Conn, key: int) -> None:
    if conn.is_closed():
        return  # the session ended, and its advisory locks with it
    try:
        await conn.execute(idempotency.UNLOCK, key)
    except Exception:
        # Never hand a connection that still holds the lock back to the pool: the action
        # would look in progress forever. Closing the session releases the lock.
        log.warning("could not release an action lock; closing its connection", exc_info=True)
        conn.terminate()


async def _finish(
    conn: Conn, new: NewAction, effect: Effect, lock_timeout_ms: int
) -> asyncpg.Record:
    try:
        async with conn.transaction():
            started = one(
                await conn.fetchrow(
                    audit.MARK_IN_PROGRESS_WITH_TIMEOUT, new.action_id, f"{lock_timeout_ms}ms"
                ),
                "start",
            )
            outcome = await effect(conn, started)
            changes = outcome.changes
            done = one(
                await conn.fetchrow(
                    audit.MARK_COMPLETED_LOCKED,
                    new.action_id,
                    outcome.result,
                    [c.kind for c in changes],
                    [c.key for c in changes],
                    [c.before for c in changes],
                    [c.after for c in changes],
                ),
                "complete",
            )
            await _append(
                conn, new, done, [audit.event_for(started), *outcome.events, audit.event_for(done)]
            )
        ACTION_OUTCOMES.labels(new.action_type, "completed").inc()
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
    except FleetwardError as err:
        await _fail(conn, new, err.message, err)
        raise
    except DATABASE_ERRORS:
        raise  # the row stays unfinished; recovery (§5.7) fails it once our lock is gone
    except Exception as exc:
        log.exception("action %s failed", new.action_id)
        failure = errors.execution_failed(str(new.action_id), _describe(exc))
        await _fail(conn, new, _describe(exc), failure)
        raise failure from exc


async def _fail(conn: Conn, new: NewAction, message: str, err: FleetwardError) -> None:
    ACTION_OUTCOMES.labels(new.action_type, "failed").inc()
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
    await audit.fail_action(conn, new.workspace_id, new.action_id, message, errors.to_json(err))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.exceptions.LockNotAvailableError):
        return "timed out waiting for locked rows; no changes were applied"
    return f"{type(exc).__name__}: {exc}"


class TaskSet:
    """Runs work shielded from the caller's cancellation and keeps it until done."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def shielded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion even if the awaiting RPC is cancelled."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller may have gone away

    async def drain(self) -> None:
        """Wait for every shielded task (graceful shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
