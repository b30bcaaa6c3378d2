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
stream reads from the table again at its own pace, then attaches anew. A feed stops when
its last tail leaves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from services.actions import errors
from services.actions.events.notifier import EventNotifier, Subscription

Item = tuple[int, bytes]  # (seq, the serialized ActionEvent)
# A feed re-reads at least this often even without a wake-up (the notifier already wakes
# every subscription after a reconnect and every poll interval).
IDLE_RECHECK_S = 30.0

SELECT_HEAD_SEQ = "SELECT last_seq FROM audit_chain_heads WHERE workspace_id = $1"
SELECT_PAGE = """
SELECT seq, event_type, payload, created_at, hash
FROM action_events
WHERE workspace_id = $1 AND seq > $2
ORDER BY seq
LIMIT $3"""


@dataclass(eq=False)
class Tail:
    """What one stream receives from a feed: the events after ``start``, buffered."""

    start: int
    limit: int
    lagged: bool = False
    _items: collections.deque[Item] = field(default_factory=collections.deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, item: Item) -> bool:
        """Buffer ``item``; False (and ``lagged``) when the buffer is full."""
        if len(self._items) >= self.limit:
            self.lagged = True
            self._items.clear()
            self._ready.set()
            return False
        self._items.append(item)
        self._ready.set()
        return True

    def wake(self) -> None:
        """Wake the stream waiting in :meth:`take` (shutdown, a re-check)."""
        self._ready.set()

    async def take(self, timeout_s: float) -> list[Item]:
        """Every buffered item, waiting up to ``timeout_s`` for one."""
        if not self._items:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout_s)
        self._ready.clear()
        items = list(self._items)
        self._items.clear()
        return items


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
        self._position = 0
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Subscribe to the workspace's wake-ups, then read the head: nothing is missed."""
        try:
            self._subscription = await self._stack.enter_async_context(
                self._notifier.subscribe(str(self.workspace_id))
            )
            head = await self._pool.fetchval(SELECT_HEAD_SEQ, self.workspace_id)
            if head is None:
                raise errors.not_found("workspace", str(self.workspace_id))
            self._position = int(head)
            self._task = asyncio.create_task(
                self._run(), name=f"fleetward-feed-{self.workspace_id}"
            )
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._ready.set()

    async def ready(self) -> None:
        """Wait until :meth:`start` finished; raise what made it fail."""
        await self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def attach(self, limit: int) -> Tail:
        """A tail receiving every event after the feed's current position."""
        tail = Tail(self._position, limit)
        self._tails.add(tail)
        return tail

    def detach(self, tail: Tail) -> bool:
        """Forget ``tail``; True when it was the last one (the feed should stop)."""
        self._tails.discard(tail)
        return not self._tails

    def wake(self) -> None:
        """Wake every tail (shutdown)."""
        for tail in tuple(self._tails):
            tail.wake()

    async def stop(self) -> None:
        """Stop reading and leave the notifier."""
        # The flag as well as the cancellation: asyncio.wait_for (3.11) can swallow a
        # cancel that lands as its wait completes, and the loop must end all the same.
        self._stopping = True
        if self._subscription is not None:
            self._subscription.wake()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._stack.aclose()

    async def _run(self) -> None:
        assert self._subscription is not None
        while not self._stopping:
            try:
                rows = await self._pool.fetch(
                    SELECT_PAGE, self.workspace_id, self._position, self._page_size
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                # The database is away: the streams' own reads report it; try again later.
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
        """A tail on the workspace's feed (started first if nobody watched it yet)."""
        feed = self._feeds.get(workspace_id)
        if feed is None:
            feed = self._feeds[workspace_id] = Feed(
                workspace_id, self._pool, self._notifier, self._convert, self._page_size
            )
            try:
                await feed.start()
            except BaseException:
                del self._feeds[workspace_id]
                raise
        await feed.ready()
        return feed.attach(self._buffer)

    async def detach(self, workspace_id: uuid.UUID, tail: Tail) -> None:
        """Leave the feed; the last tail to leave stops it."""
        feed = self._feeds.get(workspace_id)
        if feed is not None and feed.detach(tail):
            del self._feeds[workspace_id]
            await feed.stop()

    def wake_all(self) -> None:
        """Wake every tail of every feed (shutdown)."""
        for feed in tuple(self._feeds.values()):
            feed.wake()
