"""One reader per watched workspace, fanned out in memory to every stream that watches it.

Without it, every stream re-read the event table on every wake-up (each NOTIFY of its
workspace, and the notifier's periodic wake-all): a thousand idle streams cost a thousand
queries every few seconds, and a thousand per action. A :class:`Feed` reads a workspace's
new events once (``seq > position``, in pages, after each wake-up), turns each into the
bytes of its ``ActionEvent`` once, and hands them to every :class:`Tail` attached to it.

A tail attached at feed position ``P`` receives exactly the events with ``seq > P``; the
stream reads ``(its cursor, P]`` from the table itself first, so the switch has no gap and
no duplicate (``seq`` order is commit order, docs/architecture.md §6). A tail that falls
more than ``buffer`` events behind (a slow consumer) is detached and marked ``lagged``: its
stream reads from the table again at its own pace, then attaches anew.

A feed lives while anyone uses it: its tails and the streams still waiting for it to
start. It starts in a task of its own (a stream that goes away while it starts cannot
abort it for the others), stops when its last user leaves, and is never reused once it
failed: a feed that cannot read (an event it cannot convert, a bug) logs the failure once
and ends every attached stream with INTERNAL and the log line's correlation id, and the
next stream starts a fresh feed. While the database is away the feed waits and reads
again; its streams wait with it (no event can be written meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import Callable

import asyncpg

from services.actions import errors, store
from services.actions.db import DATABASE_ERRORS, unavailable_detail
from services.actions.events.notifier import EventNotifier, Subscription
from services.actions.events.tail import Tail
from services.common.funnel import unexpected
from services.common.status import ServiceError

log = logging.getLogger(__name__)

# A feed re-reads at least this often even without a wake-up (the notifier already wakes
# every subscription after a reconnect and every poll interval).
IDLE_RECHECK_S = 30.0


class Feed:
    """The shared reader of one workspace's events."""

    def __init__(
        self,
        workspace_id: uuid.UUID,
        pool: asyncpg.Pool,
        notifier: EventNotifier,
        convert: Callable[[uuid.UUID, asyncpg.Record], bytes],
        page_size: int,
    ) -> None:
        self.workspace_id = workspace_id
        self._pool = pool
        self._notifier = notifier
        self._convert = convert
        self._page_size = page_size
        self._tails: set[Tail] = set()
        self.waiting = 0  # streams inside FeedHub.attach, not yet holding a tail
        self._position = 0
        self._failure: ServiceError | None = None
        self._stopped = False
        self._starting: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._subscription: Subscription | None = None

    @property
    def failed(self) -> bool:
        """Whether the feed could not start or stopped reading for good."""
        return self._failure is not None

    @property
    def idle(self) -> bool:
        """Whether nobody uses the feed: no tail, nobody waiting for it to start."""
        return not self._tails and self.waiting == 0

    def begin(self) -> None:
        """Start subscribing and reading, in a task of the feed's own.

        In an empty context, too: the feed serves every stream of its workspace, so its
        reads belong to none of their traces (not to the first stream's, forever).
        """
        self._starting = asyncio.create_task(
            self._start(),
            name=f"fleetward-feed-start-{self.workspace_id}",
            context=contextvars.Context(),
        )

    async def ready(self) -> None:
        """Wait until the feed started; raise what made it fail.

        Cancelling the waiter leaves the start running for the other streams.
        """
        assert self._starting is not None, "begin() first"
        if not self._starting.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self._starting)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError
        if self._failure is not None:
            raise self._failure
        if self._starting.cancelled() or self._stopped:
            # Stopped under this stream (its users all left, then it came back): retry.
            raise errors.database_unavailable("the watch feed stopped; reconnect")

    async def _start(self) -> None:
        """Subscribe to the workspace's wake-ups, then read the head: nothing is missed."""
        try:
            self._subscription = await self._stack.enter_async_context(
                self._notifier.subscribe(str(self.workspace_id))
            )
            head = await store.events.last_seq(self._pool, self.workspace_id)
            if head is None:
                raise errors.not_found("workspace", str(self.workspace_id))
            self._position = int(head)
            self._task = asyncio.create_task(
                self._run(), name=f"fleetward-feed-{self.workspace_id}"
            )
        except BaseException as exc:
            await self._stack.aclose()
            if isinstance(exc, ServiceError):
                self._failure = exc
            elif isinstance(exc, DATABASE_ERRORS):
                log.warning("watch feed of %s cannot start: %r", self.workspace_id, exc)
                self._failure = errors.database_unavailable(unavailable_detail(exc))
            elif isinstance(exc, Exception):
                self._failure = unexpected(exc, f"the watch feed of {self.workspace_id}")
            raise

    def attach(self, limit: int) -> Tail:
        """A tail receiving every event after the feed's current position."""
        tail = Tail(self, self._position, limit)
        if self._failure is not None:
            tail.fail(self._failure)
        else:
            self._tails.add(tail)
        return tail

    def detach(self, tail: Tail) -> None:
        """Forget ``tail``."""
        self._tails.discard(tail)

    def wake(self) -> None:
        """Wake every tail (shutdown)."""
        for tail in tuple(self._tails):
            tail.wake()

    async def stop(self) -> None:
        """Stop starting and reading, and leave the notifier (once; later calls return)."""
        if self._stopped:
            return
        self._stopped = True
        if self._subscription is not None:
            self._subscription.wake()
        try:
            for task in (self._starting, self._task):
                if task is None or task.done():
                    continue
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # the caller's own cancellation, not the task's
                except Exception:  # noqa: S110 - its failure is already logged and recorded
                    pass
        finally:
            await self._stack.aclose()

    async def _run(self) -> None:
        try:
            await self._read()
        except Exception as exc:
            self._fail(unexpected(exc, f"the watch feed of {self.workspace_id}"))

    async def _read(self) -> None:
        assert self._subscription is not None
        # The flag as well as the cancellation: the loop must end even if a wait swallowed it.
        while not self._stopped:
            try:
                rows = await store.events.page(
                    self._pool, self.workspace_id, self._position, None, self._page_size
                )
            except DATABASE_ERRORS as exc:
                log.warning(
                    "watch feed of %s cannot read the events (%s); waiting",
                    self.workspace_id,
                    exc,
                )
                await self._subscription.wait(IDLE_RECHECK_S)
                continue
            for row in rows:
                item = (int(row["seq"]), self._convert(self.workspace_id, row))
                for tail in tuple(self._tails):
                    if not tail.push(item):
                        self._tails.discard(tail)  # lagged: its stream reads the table
                self._position = item[0]
            if len(rows) < self._page_size:
                await self._subscription.wait(IDLE_RECHECK_S)

    def _fail(self, error: ServiceError) -> None:
        self._failure = error
        for tail in tuple(self._tails):
            tail.fail(error)
        self._tails.clear()


class FeedHub:
    """The process's feeds, one per watched workspace, created and stopped on demand."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        notifier: EventNotifier,
        convert: Callable[[uuid.UUID, asyncpg.Record], bytes],
        *,
        page_size: int,
        buffer: int,
    ) -> None:
        self._pool = pool
        self._notifier = notifier
        self._convert = convert
        self._page_size = page_size
        self._buffer = buffer
        self._feeds: dict[uuid.UUID, Feed] = {}

    @property
    def feeds(self) -> int:
        """How many workspaces are being read."""
        return len(self._feeds)

    async def attach(self, workspace_id: uuid.UUID) -> Tail:
        """A tail on the workspace's feed (started first if nobody watched it yet).

        Raises what stopped the feed from starting (NOT_FOUND for a workspace without
        events, UNAVAILABLE while the database is away, INTERNAL otherwise).
        """
        feed = self._feeds.get(workspace_id)
        if feed is None or feed.failed:
            feed = self._feeds[workspace_id] = Feed(
                workspace_id, self._pool, self._notifier, self._convert, self._page_size
            )
            feed.begin()
        feed.waiting += 1
        try:
            await feed.ready()
        except BaseException:
            feed.waiting -= 1
            await self._let_go(feed)
            raise
        feed.waiting -= 1
        return feed.attach(self._buffer)

    async def detach(self, tail: Tail) -> None:
        """Leave the tail's feed; the last user to leave stops it."""
        tail.feed.detach(tail)
        await self._let_go(tail.feed)

    async def _let_go(self, feed: Feed) -> None:
        if feed.failed and self._feeds.get(feed.workspace_id) is feed:
            del self._feeds[feed.workspace_id]  # the next stream starts a fresh one
        if feed.idle:
            if self._feeds.get(feed.workspace_id) is feed:
                del self._feeds[feed.workspace_id]
            await feed.stop()

    def wake_all(self) -> None:
        """Wake every tail of every feed (shutdown)."""
        for feed in tuple(self._feeds.values()):
            feed.wake()
