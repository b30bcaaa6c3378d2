"""The action lock: a session advisory lock per action recorded in two steps (a kind with
an external effect), held by its executor from before the pending row commits until the
row is final (docs/architecture.md §5.2, §5.7). An action recorded in one transaction
has no unfinished row, and so no lock.

A pending or in-progress row whose lock is free was interrupted (nothing of its effect
was committed: the effect commits with the final status). :func:`fail_if_orphaned` is
the one place such a row is failed: the recovery job calls it for old unfinished rows,
and an idempotent repeat for its own.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from services.actions import errors, store
from services.actions.db import Conn
from services.actions.model import ActionRecord

INTERRUPTED = "interrupted before completion; no changes were applied"

TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
UNLOCK = "SELECT pg_advisory_unlock($1)"

# The idempotency key's transaction lock (one-transaction form): the two-key form, class
# "ikey", apart from the actions' bigint locks and the denials' class.
KEY_CLASS = 0x696B6579
TRY_KEY_LOCK = f"SELECT pg_try_advisory_xact_lock({KEY_CLASS}, $1)"


def lock_key(action_id: uuid.UUID) -> int:
    """The session advisory lock key of an action: its first 8 bytes as a signed bigint."""
    return int.from_bytes(action_id.bytes[:8], "big", signed=True)


def key_lock(workspace_id: uuid.UUID, subject: str, request_id: str) -> int:
    """The transaction advisory lock id of an idempotency key (a signed int4 of its hash).

    An action recorded in one transaction holds it from its ``BEGIN`` to its end, so that
    a concurrent duplicate waits for the first's outcome instead of racing it (a collision
    of two keys only makes them wait for each other).
    """
    digest = hashlib.sha256(f"{workspace_id}/{subject}/{request_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def lock_key_sql(key: int) -> str:
    """``SELECT pg_advisory_xact_lock(…)`` of :func:`key_lock`'s id (an int, formatted in:
    it goes in the same simple-query round trip as ``BEGIN``).
    """
    return f"SELECT pg_advisory_xact_lock({KEY_CLASS}, {int(key)})"


@dataclass(frozen=True)
class Orphan:
    """What :func:`fail_if_orphaned` found.

    Attributes:
        alive: Its executor holds the lock: nothing was done.
        failed: The row, marked ``failed`` by this call; ``None`` when its executor is
            alive, or finished it between the caller's read and the lock.
    """

    alive: bool
    failed: ActionRecord | None = None


async def fail_if_orphaned(conn: Conn, workspace_id: uuid.UUID, action_id: uuid.UUID) -> Orphan:
    """Mark the unfinished action ``failed`` (interrupted) when its executor is gone."""
    key = lock_key(action_id)
    if not await conn.fetchval(TRY_LOCK, key):
        return Orphan(alive=True)
    try:
        error = errors.execution_failed(str(action_id), INTERRUPTED)
        failed = await store.actions.fail(
            conn, workspace_id, action_id, INTERRUPTED, errors.to_json(error)
        )
        return Orphan(alive=False, failed=failed)
    finally:
        await conn.execute(UNLOCK, key)
