"""WatchActions: replay a workspace's events by ``seq``, then tail them (docs/architecture.md §6).

The table is the truth: a stream reads ``seq > last`` in pages of at most
:data:`PAGE_SIZE` and, once caught up, sleeps on its notifier subscription until a
NOTIFY (or the notifier's periodic wake-up) says the workspace may have more. Because
every appender holds the workspace's chain head until it commits, ``seq`` order is
commit order, so "read ``seq > last`` after each wake-up" can neither skip a late
commit nor repeat an event; the subscription is registered before the first read, so a
wake-up between a read and the wait is never lost.

Each stream reads at its own pace and keeps at most one page in memory; it holds no
database connection while it waits or while gRPC flow control holds it in ``yield``,
so a slow consumer costs nothing to writers or other streams. On shutdown
(:meth:`Watcher.close`) every stream returns (status OK) and the client resumes from
its last ``seq``. A stream ends with UNAUTHENTICATED when its token expires and with
PERMISSION_DENIED when a periodic re-check (every :data:`REAUTHORIZE_S`) finds the
caller's ``actions:read`` revoked; either way the client reconnects with its last ``seq``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import asyncpg
from fleetward.actions.v1 import actions_pb2
from google.protobuf import timestamp_pb2

from services.actions import access, convert, errors
from services.actions.call import Call
from services.actions.events.notifier import EventNotifier
from services.actions.metrics import WATCH_STREAMS
from services.actions.policy_client import PolicyClient
from services.actions.validation import parse_uuid
from services.common.status import FieldViolation, invalid_argument, unauthenticated

PAGE_SIZE = 500
# A stream re-reads at least this often even without a wake-up (belt and braces: the
# notifier already wakes everyone on reconnects and every poll interval).
IDLE_RECHECK_S = 30.0
REAUTHORIZE_S = 60.0

SELECT_HEAD_SEQ = "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1"
SELECT_PAGE = """
SELECT seq, event_type, payload, created_at, hash
FROM action_events
WHERE workspace_id = $1 AND seq > $2
ORDER BY seq
LIMIT $3"""


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def payload_row(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An event payload (``audit.snapshot``) in the row shape :func:`convert.action` reads."""
    actor = payload.get("actor") or {}
    row = dict(payload)
    row["action_params"] = payload.get("params")
    row["actor_user_id"] = actor.get("subject", "")
    row["actor_role"] = ",".join(actor.get("roles", ()))
    for name in ("created_at", "started_at", "completed_at", "rolled_back_at"):
        row[name] = _parse_time(payload.get(name))
    return row


def to_event(workspace_id: uuid.UUID, row: asyncpg.Record) -> actions_pb2.ActionEvent:
    """One ``action_events`` row as an ActionEvent."""
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(row["created_at"])
    return actions_pb2.ActionEvent(
        workspace_id=str(workspace_id),
        seq=row["seq"],
        event_type=row["event_type"],
        action=convert.action(payload_row(row["payload"])),
        created_at=created,
        hash=row["hash"],
    )


class Watcher:
    """Opens WatchActions streams; one per process, closed on shutdown."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: PolicyClient,
        notifier: EventNotifier,
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._notifier = notifier
        self._page_size = page_size
        self._closing = False
        # How often a long-lived stream re-asks the policy service (a revoked role ends it).
        self.reauthorize_s = REAUTHORIZE_S

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called (streams end at their next check)."""
        return self._closing

    def close(self) -> None:
        """End every stream cleanly: mark closing and wake them all."""
        self._closing = True
        self._notifier.wake_all()

    async def open(
        self, call: Call, request: actions_pb2.WatchActionsRequest
    ) -> AsyncIterator[actions_pb2.ActionEvent]:
        """Validate and authorize (``actions:read`` on ``fleet``); return the event stream.

        Raises INVALID_ARGUMENT (also for an ``after_seq`` beyond the workspace's last
        event), PERMISSION_DENIED (also for a workspace that does not exist, unless the
        caller may read it) or NOT_FOUND before any event is sent.
        """
        out: list[FieldViolation] = []
        workspace_id = parse_uuid(request.workspace_id, "workspace_id", out)
        if request.after_seq < 0:
            out.append(FieldViolation("after_seq", "must be 0 or more"))
        if out:
            raise invalid_argument(out)
        call.ensure_time_left()
        await access.require(self._policy, call, workspace_id, access.READ, access.FLEET)
        head = await self._pool.fetchval(SELECT_HEAD_SEQ, workspace_id)
        if head is None:
            raise errors.not_found("workspace", str(workspace_id))
        if request.after_seq > head:
            # A cursor from another database (or a restored backup): resuming from it
            # would silently skip events, so say so instead.
            raise invalid_argument(
                [FieldViolation("after_seq", f"beyond the workspace's last event (seq {head})")]
            )
        return self._stream(call, workspace_id, request.after_seq)

    async def _stream(
        self, call: Call, workspace_id: uuid.UUID, after_seq: int
    ) -> AsyncIterator[actions_pb2.ActionEvent]:
        last = after_seq
        expires = _expiry(call)
        next_check = time.monotonic() + self.reauthorize_s
        WATCH_STREAMS.inc()
        try:
            async with self._notifier.subscribe(str(workspace_id)) as sub:
                while not self._closing:
                    next_check = await self._still_allowed(call, workspace_id, expires, next_check)
                    rows = await self._pool.fetch(SELECT_PAGE, workspace_id, last, self._page_size)
                    for row in rows:
                        yield to_event(workspace_id, row)
                        last = row["seq"]
                        if self._closing:
                            return
                    if len(rows) < self._page_size:
                        idle = min(IDLE_RECHECK_S, max(0.0, next_check - time.monotonic()))
                        if expires is not None:
                            idle = min(idle, max(0.0, expires - time.time()))
                        await sub.wait(idle)
        finally:
            WATCH_STREAMS.dec()

    async def _still_allowed(
        self, call: Call, workspace_id: uuid.UUID, expires: float | None, next_check: float
    ) -> float:
        """End a long-lived stream whose token expired or whose read permission was revoked."""
        if expires is not None and time.time() >= expires:
            raise unauthenticated("the token expired; reconnect with a fresh one and the last seq")
        if time.monotonic() < next_check:
            return next_check
        await access.require(self._policy, call, workspace_id, access.READ, access.FLEET)
        return time.monotonic() + self.reauthorize_s


def _expiry(call: Call) -> float | None:
    exp = call.principal.claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None
