"""WatchActions: replay a workspace's events by ``seq``, then tail them (docs/architecture.md §6).

The table is the truth. A stream reads its history (``seq > after_seq``) from the table in
pages of at most :data:`PAGE_SIZE`, at its own pace, up to the position where its
workspace's shared feed took over (:mod:`services.actions.events.feed`); then it sends
what the feed reads, once per workspace for all its streams. Because every appender
holds the workspace's chain head until it commits, ``seq`` order is commit order: the
switch from table to feed has no gap and no duplicate. A stream that falls too far
behind the feed reads the table again and rejoins. A ``live_only`` stream skips the
history: it starts after its feed's position when it attaches, so it sends only the events
appended from then on.

Streams hold no database connection while they wait, and read the table through a small
pool of their own, so watchers never take a connection an Execute needs. Open streams are
capped per process and per subject (RESOURCE_EXHAUSTED ``TOO_MANY_STREAMS``). On shutdown
(:meth:`Watcher.close`) every stream returns (status OK) and the client resumes from its
last ``seq``. A stream ends with UNAUTHENTICATED when its token expires and with
PERMISSION_DENIED when a periodic re-check (every :data:`REAUTHORIZE_S`) finds the
caller's ``actions:read`` revoked; either way the client reconnects with its last ``seq``.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import asyncpg

from services.actions import access, convert, errors, store
from services.actions.call import Call
from services.actions.events.feed import FeedHub
from services.actions.events.notifier import EventNotifier
from services.actions.events.replay import ReplayBudget
from services.actions.events.tail import Tail
from services.actions.metrics import WATCH_STREAMS
from services.actions.policy_gateway import PolicyGateway
from services.actions.read_commands import WatchCommand
from services.common.names import FLEET_PATH
from services.common.status import FieldViolation, invalid_argument, unauthenticated

log = logging.getLogger(__name__)

PAGE_SIZE = 500
# A stream re-checks its token and permission at least this often while idle.
IDLE_RECHECK_S = 30.0
REAUTHORIZE_S = 60.0
# Events a stream may fall behind its workspace's feed before it reads the table itself.
TAIL_BUFFER = 2000


@dataclass(frozen=True)
class StreamLimits:
    """How many WatchActions streams may be open at once, per process and per subject;
    how fast they may read history (:mod:`services.actions.events.replay`).
    """

    per_process: int = 2000
    per_subject: int = 100
    replay_events_per_s: float = 5000.0
    replays_per_subject: int = 2


class Watcher:
    """Opens WatchActions streams; one per process, closed on shutdown."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: PolicyGateway,
        notifier: EventNotifier,
        *,
        page_size: int = PAGE_SIZE,
        limits: StreamLimits = StreamLimits(),
    ) -> None:
        """Create the watcher.

        Args:
            pool: Reads of the event table (its own small pool: watchers never wait for
                a connection that an Execute needs).
            policy: The policy service (``actions:read`` on open and every minute).
            notifier: The process's LISTEN connection.
            page_size: Rows per read.
            limits: Open streams allowed per process and per subject.
        """
        self._pool = pool
        self._policy = policy
        self._page_size = page_size
        self._limits = limits
        self._feeds = FeedHub(
            pool, notifier, convert.event_bytes, page_size=page_size, buffer=TAIL_BUFFER
        )
        self._replays = ReplayBudget(limits.replay_events_per_s, limits.replays_per_subject)
        self._notifier = notifier
        self._open = 0
        self._by_subject: collections.Counter[str] = collections.Counter()
        self._closing = False
        # How often a long-lived stream re-asks the policy service (a revoked role ends it).
        self.reauthorize_s = REAUTHORIZE_S

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called (streams end at their next check)."""
        return self._closing

    @property
    def open_streams(self) -> int:
        """Streams open now."""
        return self._open

    @property
    def feeds(self) -> int:
        """Workspaces being read for their streams (one reader each)."""
        return self._feeds.feeds

    def close(self) -> None:
        """End every stream cleanly: mark closing and wake them all."""
        self._closing = True
        self._feeds.wake_all()
        self._notifier.wake_all()

    async def open(self, call: Call, cmd: WatchCommand) -> AsyncIterator[bytes]:
        """Authorize (``actions:read`` on ``fleet``); return the stream.

        Raises PERMISSION_DENIED (also for a workspace that does not exist, unless the
        caller may read it). The stream itself raises, before its first event,
        RESOURCE_EXHAUSTED ``TOO_MANY_STREAMS``, NOT_FOUND, or INVALID_ARGUMENT for an
        ``after_seq`` beyond the workspace's last event.
        """
        call.ensure_time_left()
        await access.require(self._policy, call, cmd.workspace_id, access.READ, FLEET_PATH)
        return self._stream(call, cmd.workspace_id, cmd.after_seq, live_only=cmd.live_only)

    def _admit(self, subject: str) -> None:
        """Count a new stream, or RESOURCE_EXHAUSTED ``TOO_MANY_STREAMS``."""
        if self._open >= self._limits.per_process:
            raise errors.too_many_streams("process", self._limits.per_process)
        if self._by_subject[subject] >= self._limits.per_subject:
            raise errors.too_many_streams("subject", self._limits.per_subject)
        self._open += 1
        self._by_subject[subject] += 1
        WATCH_STREAMS.inc()

    def _release(self, subject: str) -> None:
        self._open -= 1
        self._by_subject[subject] -= 1
        if not self._by_subject[subject]:
            del self._by_subject[subject]
        WATCH_STREAMS.dec()

    async def _stream(
        self, call: Call, workspace_id: uuid.UUID, after_seq: int, *, live_only: bool
    ) -> AsyncIterator[bytes]:
        """The stream; its count and its tail are taken and given back inside the body, so
        a stream dropped before its first read holds nothing. A ``live_only`` stream starts
        where its tail starts: nothing before it is read from the table.
        """
        self._admit(call.subject)
        try:
            # Attaching reads the workspace's head once per workspace, not once per stream.
            tail = await self._feeds.attach(workspace_id)
            if live_only:
                after_seq = tail.start
            try:
                if after_seq > tail.start:
                    head = await store.events.last_seq(self._pool, workspace_id)
                    if after_seq > (head or 0):
                        # A cursor from another database (or a restored backup): resuming
                        # from it would silently skip events, so say so instead.
                        problem = f"beyond the workspace's last event (seq {head})"
                        raise invalid_argument([FieldViolation("after_seq", problem)])
            except BaseException:
                await self._feeds.detach(tail)
                raise
            async for data in self._follow(call, workspace_id, after_seq, tail):
                yield data
        finally:
            self._release(call.subject)

    async def _follow(
        self, call: Call, workspace_id: uuid.UUID, after_seq: int, first: Tail
    ) -> AsyncIterator[bytes]:
        """The table, then the feed, after ``after_seq``; detaches its tail however it ends."""
        at = _Position(after_seq, _expiry(call), time.monotonic() + self.reauthorize_s)
        tail: Tail | None = first
        try:
            while not self._closing:
                if tail is None:  # rejoining after lagging behind
                    tail = await self._feeds.attach(workspace_id)
                if at.last < tail.start:
                    # The history before the feed took over, within the replay budget.
                    history = self._history(call, workspace_id, tail.start, at)
                    async with self._replays.replaying(call.subject), aclosing(history):
                        async for data in history:
                            yield data
                # Then live, from the feed, until shutdown (or this stream lags).
                while not self._closing and not tail.lagged:
                    await self._still_allowed(call, workspace_id, at)
                    idle = min(IDLE_RECHECK_S, max(0.0, at.next_check - time.monotonic()))
                    if at.expires is not None:
                        idle = min(idle, max(0.0, at.expires - time.time()))
                    for seq, data in await tail.take(idle):
                        if seq > at.last:
                            yield data
                            at.last = seq
                await self._feeds.detach(tail)
                tail = None
        finally:
            if tail is not None:
                await self._feeds.detach(tail)

    async def _history(
        self, call: Call, workspace_id: uuid.UUID, until: int, at: _Position
    ) -> AsyncGenerator[bytes, None]:
        """The events in ``(at.last, until]`` from the table, a page at a time."""
        while at.last < until and not self._closing:
            await self._still_allowed(call, workspace_id, at)
            rows = await store.events.page(
                self._pool, workspace_id, at.last, until, self._page_size
            )
            if not rows:
                # The chain head is ahead of the events (rows deleted, a partial restore:
                # `fleetward audit verify` reports it). There is nothing more to send.
                log.warning(
                    "workspace %s has no events in (%d, %d]; its chain head is ahead",
                    workspace_id,
                    at.last,
                    until,
                )
                at.last = until
                return
            await self._replays.spend(len(rows))
            for row in rows:
                yield convert.event_bytes(workspace_id, row)
                at.last = row["seq"]
                if self._closing:
                    return

    async def _still_allowed(self, call: Call, workspace_id: uuid.UUID, at: _Position) -> None:
        """End a long-lived stream whose token expired or whose read permission was revoked."""
        if at.expires is not None and time.time() >= at.expires:
            raise unauthenticated("the token expired; reconnect with a fresh one and the last seq")
        if time.monotonic() < at.next_check:
            return
        await access.require(self._policy, call, workspace_id, access.READ, FLEET_PATH)
        at.next_check = time.monotonic() + self.reauthorize_s


@dataclass
class _Position:
    """Where a stream is: the last ``seq`` sent, when its token expires, when it next
    asks the policy service whether it may still read.
    """

    last: int
    expires: float | None
    next_check: float


def _expiry(call: Call) -> float | None:
    exp = call.principal.claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None
