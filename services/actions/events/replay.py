"""How fast watch streams may read history from the event table, all of them together.

A stream that resumes from an old ``seq`` reads the events it missed from the table,
converts and sends each one: CPU on the event loop that Execute shares. Unbounded, ten
streams replaying a long history from seq 0 (a viewer may open them) took the loop from
every other call (Execute p50 from 9 ms to 42 ms). Live events are not limited: writes
bound them.

The budget is a token bucket of events per second for the process, taken in turns
(first come, first served, one page at a time, so a stream that just arrived waits one
page, not for the others to finish), and a subject replays at most ``per_subject``
streams at once: one caller's many streams do not crowd out another's catch-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


class ReplayBudget:
    """The events per second that streams may read from the table, shared in turns."""

    def __init__(
        self,
        events_per_s: float,
        per_subject: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Create the budget.

        Args:
            events_per_s: Events read from the table per second, all streams together
                (a second's worth may go at once).
            per_subject: Streams of one subject that may read history at the same time.
            clock: Seconds, monotonic (tests pass their own clock and sleep).
            sleep: Waits the given seconds.
        """
        if events_per_s <= 0 or per_subject < 1:
            raise ValueError("the replay budget needs a positive rate and at least 1 stream")
        self._clock, self._sleep = clock, sleep
        self._rate = events_per_s
        self._tokens = events_per_s
        self._last = clock()
        self._turn = asyncio.Lock()
        self._per_subject = per_subject
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def replaying(self, subject: str) -> AsyncIterator[None]:
        """Hold one of ``subject``'s replay slots while reading history."""
        slot, users = self._slots.get(subject, (asyncio.Semaphore(self._per_subject), 0))
        self._slots[subject] = (slot, users + 1)
        try:
            async with slot:
                yield
        finally:
            slot, users = self._slots[subject]
            if users == 1:
                del self._slots[subject]
            else:
                self._slots[subject] = (slot, users - 1)

    async def spend(self, events: int) -> None:
        """Wait until ``events`` more may be sent; streams take turns."""
        async with self._turn:
            now = self._clock()
            self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
            self._last = now
            self._tokens -= events
            if self._tokens < 0:
                await self._sleep(-self._tokens / self._rate)
