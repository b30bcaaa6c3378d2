"""Crash recovery (docs/architecture.md §5.7): fail actions whose executor is gone.

An executor holds its action's session advisory lock from before the pending row commits
until the row is final, so a pending/in_progress row whose lock is free was interrupted;
nothing of its effect was committed (the effect commits with the final status). Every
process runs it at start and every ``FLEETWARD_RECOVERY_INTERVAL_S`` (60 s;
:class:`services.common.tasks.PeriodicJob`); a retry of the same request recovers its row
inline (:mod:`services.actions.idempotency`); both through
:func:`services.actions.action_lock.fail_if_orphaned`.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg

from services.actions import action_lock, store

log = logging.getLogger(__name__)


async def recover_orphans(pool: asyncpg.Pool, min_age_s: float = 1.0) -> list[uuid.UUID]:
    """Mark every unfinished action whose advisory lock is free ``failed``; return their ids."""
    recovered: list[uuid.UUID] = []
    async with pool.acquire() as conn:
        rows = await store.history.unfinished(conn, min_age_s)
        for row in rows:
            orphan = await action_lock.fail_if_orphaned(conn, row["workspace_id"], row["action_id"])
            if orphan.failed is not None:  # not alive, and not finished meanwhile
                recovered.append(row["action_id"])
                log.warning(
                    "recovered interrupted action",
                    extra={"action_id": str(row["action_id"]), "event": "recovered"},
                )
    return recovered
