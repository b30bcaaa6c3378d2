"""What one WatchActions stream receives from its workspace's feed: the events after the
position it attached at, buffered up to a limit (beyond it the stream is ``lagged`` and
reads the table itself again). See :mod:`services.actions.events.feed`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.common.status import ServiceError

if TYPE_CHECKING:
    from services.actions.events.feed import Feed

Item = tuple[int, bytes]  # (seq, the serialized ActionEvent)


@dataclass(eq=False)
class Tail:
    """What one stream receives from its feed: the events after ``start``, buffered."""

    feed: Feed
    start: int
    limit: int
    lagged: bool = False
    failure: ServiceError | None = None
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

    def fail(self, error: ServiceError) -> None:
        """End the stream with ``error`` at its next :meth:`take`."""
        self.failure = error
        self._ready.set()

    def wake(self) -> None:
        """Wake the stream waiting in :meth:`take` (shutdown, a re-check)."""
        self._ready.set()

    async def take(self, timeout_s: float) -> list[Item]:
        """Every buffered item, waiting up to ``timeout_s`` for one.

        Raises the feed's failure. ``asyncio.timeout``, not ``wait_for``: on Python 3.11
        the latter can swallow a cancellation that lands as the wait completes, and a
        cancelled stream must end.
        """
        if not self._items and self.failure is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
        if self.failure is not None:
            raise self.failure
        self._ready.clear()
        items = list(self._items)
        self._items.clear()
        return items
