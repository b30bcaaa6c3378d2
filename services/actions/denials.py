"""Recorded denials (docs/architecture.md §5.10): a policy refusal of a caller with a role
in the workspace is an audit row (status ``denied``) and an event on the workspace's
chain, within a per-subject limit; beyond it the caller gets RATE_LIMITED and nothing is
recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import asyncpg

from services.actions import errors, idempotency, store
from services.actions.metrics import ACTION_OUTCOMES
from services.actions.model import ActionRecord, ActionStatus, NewAction
from services.common.status import ServiceError
from services.common.tasks import TaskSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenialLimit:
    """How many denials one subject may have recorded per workspace in a sliding window.

    Every recorded denial is an audit row and an event on the workspace's chain (under
    the chain head's lock, which real actions queue on too): beyond the limit a denial is
    answered RESOURCE_EXHAUSTED ``RATE_LIMITED`` (with RetryInfo) and not recorded. A
    limit, not collapsing repeats into one row: repeats can differ in every field, and an
    audit row never changes once final (docs/DECISIONS.md).
    """

    per_window: int = 30
    window_s: int = 60


async def record_denied(
    pool: asyncpg.Pool,
    new: NewAction,
    error: ServiceError,
    limit: DenialLimit = DenialLimit(),
) -> ActionRecord | None:
    """Record a policy denial (status ``denied``) with its event, or replay an earlier claim.

    A denied action changed nothing, so it is recorded with ``can_rollback = false``.
    Raises RATE_LIMITED, recording nothing, when the subject's recent denials in the
    workspace reach ``limit``.
    """
    new = dataclasses.replace(new, can_rollback=False)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await store.actions.lock_denials(conn, new.workspace_id, new.subject)
            wait = await store.actions.denial_wait(
                conn, new.workspace_id, new.subject, limit.window_s, limit.per_window
            )
            if wait is not None:
                raise _rate_limited(new, limit, wait)
            row = await store.actions.record_denied(conn, new, error.message, errors.to_json(error))
            if row is not None:
                ACTION_OUTCOMES.labels(new.action_type, ActionStatus.DENIED).inc()
                return None
        existing = await store.actions.find_by_key(
            conn, new.workspace_id, new.subject, new.request_id
        )
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish
            raise errors.internal("idempotency conflict without a row")
        return await idempotency.replay(conn, existing, new.fingerprint)


def _rate_limited(new: NewAction, limit: DenialLimit, wait_s: float) -> ServiceError:
    ACTION_OUTCOMES.labels(new.action_type, "rate_limited").inc()
    log.warning(
        "denial not recorded: %s is over %d denials in %d s",
        new.subject,
        limit.per_window,
        limit.window_s,
        extra={"workspace_id": str(new.workspace_id), "subject": new.subject},
    )
    return errors.rate_limited(limit.per_window, limit.window_s, max(1.0, wait_s))


async def deny(
    pool: asyncpg.Pool,
    tasks: TaskSet,
    new: NewAction,
    record: bool,
    error: ServiceError,
    limit: DenialLimit = DenialLimit(),
) -> ActionRecord:
    """Raise ``error``, first recording ``new`` as ``denied`` when ``record``.

    Returns instead the original outcome when the request's key was already recorded
    (an idempotent repeat that raced past the first look-up). Raises RATE_LIMITED instead
    of recording when the subject's recent denials reach ``limit``.
    """
    if record:
        replayed = await tasks.shielded(record_denied(pool, new, error, limit))
        if replayed is not None:
            return replayed
    raise error
