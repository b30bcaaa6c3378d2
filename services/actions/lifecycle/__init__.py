"""The recorded part of an action's life (docs/architecture.md §5.2, §5.7).

Two forms, chosen by the action's kind:

- :mod:`.one_transaction`, for every kind whose effect is rows in PostgreSQL: the effect,
  the audit row (inserted final), its ``action_targets`` and its chain events commit
  together; a failure or crash leaves nothing but, for a failure, a ``failed`` row written
  afterwards.
- :mod:`.two_step`, for a kind that declares an external effect: the pending row commits
  first under the action's advisory lock, then the effect and the completion commit
  together; crash recovery fails a pending row whose executor is gone.

Callers run :func:`run` shielded from cancellation (:class:`TaskSet`). With tracing on,
the effect is an ``action.effect`` span (its statements inside it).
"""

from __future__ import annotations

import asyncpg

from services.actions.lifecycle import one_transaction, two_step
from services.actions.lifecycle._shared import Effect
from services.actions.model import ActionRecord, NewAction

__all__ = ["Effect", "run"]


async def run(
    pool: asyncpg.Pool,
    new: NewAction,
    effect: Effect,
    lock_timeout_ms: int,
    *,
    external_effect: bool = False,
) -> ActionRecord:
    """Record ``new`` and run ``effect`` to its final status; the final row.

    Args:
        pool: The main database pool.
        new: The action to record.
        effect: Its effect, run inside the action's transaction.
        lock_timeout_ms: How long a lock may be waited for (the request's deadline).
        external_effect: Whether the effect reaches outside PostgreSQL (the two-step form).

    Raises:
        ServiceError: The first outcome's error on an idempotent repeat, the effect's own
            (a ``failed`` row recorded with it), or ACTION_EXECUTION_FAILED.
    """
    if external_effect:
        return await two_step.run(pool, new, effect, lock_timeout_ms)
    return await one_transaction.run(pool, new, effect, lock_timeout_ms)
