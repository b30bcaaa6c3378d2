"""Crash recovery (docs/architecture.md §5.7): fail actions whose executor is gone.

An executor holds its action's session advisory lock from before the pending row commits
until the row is final, so a pending/in_progress row whose lock is free was interrupted;
by §5.2 nothing of its effect was committed. Every process runs it at start and every
``FLEETWARD_RECOVERY_INTERVAL_S`` (60 s; :class:`services.actions.scheduler.PeriodicJob`);
a retry of the same request recovers its row inline (:mod:`services.actions.idempotency`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import asyncpg

from services.actions import errors, idempotency
from services.actions.audit import store as audit_store

log = logging.getLogger(__name__)

# Rows older than this are candidates: younger ones are most likely still running.
SELECT_UNFINISHED = """
SELECT action_id, workspace_id FROM action_audit_log
WHERE status IN ('pending', 'in_progress') AND created_at < clock_timestamp() - $1::interval
ORDER BY created_at
LIMIT 1000"""


async def recover_orphans(pool: asyncpg.Pool, min_age_s: float = 1.0) -> list[uuid.UUID]:
    """Mark every unfinished action whose advisory lock is free ``failed``; return their ids."""
    recovered: list[uuid.UUID] = []
    async with pool.acquire() as conn:
        rows = await conn.fetch(SELECT_UNFINISHED, timedelta(seconds=min_age_s))
        for row in rows:
            key = idempotency.lock_key(row["action_id"])
            if not await conn.fetchval(idempotency.TRY_LOCK, key):
                continue  # its executor is alive
            try:
                error = errors.execution_failed(str(row["action_id"]), idempotency.INTERRUPTED)
                failed = await audit_store.fail_action(
                    conn,
                    row["workspace_id"],
                    row["action_id"],
                    idempotency.INTERRUPTED,
                    errors.to_json(error),
                )
                if failed is not None:
                    recovered.append(row["action_id"])
                    log.warning(
                        "recovered interrupted action",
                        extra={"action_id": str(row["action_id"]), "event": "recovered"},
                    )
            finally:
                await conn.execute(idempotency.UNLOCK, key)
    return recovered
