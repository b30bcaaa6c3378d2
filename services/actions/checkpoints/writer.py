"""The action service's checkpoint writer: sign every chain head that moved, append it.

Run every ``FLEETWARD_CHECKPOINT_INTERVAL_S`` (60 s) by a periodic job, and once more at
shutdown. For each workspace whose head is past what its file holds, the writer takes a
transaction-scoped advisory lock for that workspace (one replica at a time writes a
workspace's checkpoint, and in the order of the heads it read), reads the head again
inside it, signs it and appends the line with fsync before the lock is released. The
file, not memory, says what was written, so replicas sharing a directory and a restart
both continue where the file ends.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from prometheus_client import Counter, Gauge

from services.actions import store
from services.actions.audit.documents import iso
from services.actions.checkpoints import files
from services.actions.checkpoints.signing import (
    Checkpoint,
    CheckpointError,
    SigningKey,
    parse,
    sign,
)
from services.actions.db import DATABASE_ERRORS

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock(class, hashtext(workspace)): the two-key form keeps it apart
# from the actions' bigint locks and from the denial lock's class.
LOCK_CLASS = 1667788611
LOCK = "SELECT pg_try_advisory_xact_lock($1, hashtext($2::uuid::text))"

CHECKPOINT_OUTCOMES = Counter(
    "fleetward_checkpoints_total",
    "Checkpoint attempts of moved chain heads by outcome "
    "(written, current, locked, refused, file_error)",
    ["outcome"],
)
LAST_PASS = Gauge(
    "fleetward_checkpoint_last_pass_timestamp_seconds",
    "When the checkpoint writer last finished a pass over every workspace (Unix time; "
    "fleetward_checkpoints_total says how each workspace fared)",
)


class Checkpointer:
    """Signs and appends the chain heads of every workspace whose head moved."""

    def __init__(self, pool: asyncpg.Pool, directory: Path, key: SigningKey) -> None:
        self._pool = pool
        self._directory = directory
        self._key = key
        # What each file ended with when this process last looked (a cache of the files).
        self._written: dict[uuid.UUID, int] = {}
        try:
            directory.mkdir(parents=True, exist_ok=True)
            files.publish_public_key(directory, key.public)
        except OSError as exc:
            raise CheckpointError(f"{directory}: cannot write checkpoints there ({exc})") from exc
        # Every published key: after a rotation, the last line may be signed by an old one.
        self._keys = files.published_keys(directory)

    async def write_due(self) -> int:
        """One pass over every workspace; returns how many checkpoints it appended.

        A workspace that cannot be signed now (locked by someone else, a file that is not
        ours, a chain that no longer extends its last checkpoint) is logged and counted,
        and the pass goes on with the others.
        """
        heads = await store.events.moved_heads(self._pool)
        written = 0
        for row in heads:
            workspace_id, seq = row["workspace_id"], int(row["last_seq"])
            if seq <= self._written.get(workspace_id, 0):
                continue
            try:
                outcome = await self._write(workspace_id)
            except (OSError, CheckpointError) as exc:
                outcome = "file_error"
                log.error(
                    "checkpoint of workspace %s not written: %s",
                    workspace_id,
                    exc,
                    extra={"workspace_id": str(workspace_id), "event": "checkpoint_failed"},
                )
            CHECKPOINT_OUTCOMES.labels(outcome).inc()
            written += outcome == "written"
        LAST_PASS.set_to_current_time()
        return written

    async def final(self) -> None:
        """The shutdown pass: every head that moved since the last pass, signed now."""
        try:
            written = await self.write_due()
        except DATABASE_ERRORS as exc:
            log.warning("final checkpoints skipped: database unavailable (%s)", type(exc).__name__)
            return
        log.info("final checkpoints written: %d", written, extra={"event": "checkpoints"})

    async def _write(self, workspace_id: uuid.UUID) -> str:
        path = files.path_for(self._directory, workspace_id)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(LOCK, LOCK_CLASS, workspace_id):
                # Another replica writing it now, or a session holding the lock to keep a
                # workspace unsigned: logged, so a lock that stays is seen.
                log.warning(
                    "checkpoint of workspace %s skipped: its lock is held elsewhere",
                    workspace_id,
                    extra={"workspace_id": str(workspace_id), "event": "checkpoint_skipped"},
                )
                return "locked"
            head = await store.events.head(conn, workspace_id)
            last = await asyncio.to_thread(self._last_on_file, path)
            on_file = 0 if last is None else last.seq
            if head is None or int(head["last_seq"]) <= on_file:
                self._written[workspace_id] = on_file
                return "current"
            if last is not None:
                stored = await store.events.hash_at(conn, workspace_id, last.seq)
                if stored != last.hash:
                    # Never sign a head that does not extend the last signed one: that would
                    # vouch for a rewritten history.
                    log.error(
                        "checkpoint of workspace %s refused: the chain no longer holds the "
                        "signed seq %d (rewritten since %s); run audit verify --checkpoints",
                        workspace_id,
                        last.seq,
                        iso(last.time),
                        extra={"workspace_id": str(workspace_id), "event": "checkpoint_refused"},
                    )
                    return "refused"
            checkpoint = Checkpoint(
                workspace_id,
                int(head["last_seq"]),
                str(head["last_hash"]),
                datetime.now(UTC),
                self._key.key_id,
            )
            await asyncio.to_thread(files.append, path, sign(checkpoint, self._key))
        self._written[workspace_id] = checkpoint.seq
        return "written"

    def _last_on_file(self, path: Path) -> Checkpoint | None:
        """The file's last checkpoint: None if none, or if it does not verify under a
        published key (a new checkpoint follows it; ``audit verify`` reports the line).
        """
        line = files.last_line(path)
        if line is None:
            return None
        try:
            return parse(line, self._keys)
        except Exception as exc:  # any line that is not ours
            log.warning("checkpoint file %s ends in a line that does not verify: %s", path, exc)
            return None
