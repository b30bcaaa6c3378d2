"""One LISTEN connection per process, fanned out in memory to the streams that wait on it.

``NOTIFY fleetward_events, '<workspace_id>'`` only wakes listeners: a watcher always
re-reads ``action_events`` by ``seq`` after a wake-up, so a lost notification (a dropped
connection, a reconnect window) costs latency, never an event. To bound that latency
the notifier also wakes everyone after a reconnect and every ``poll_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from services.common import names

log = logging.getLogger(__name__)


def _set_event(event: asyncio.Event, _conn: object) -> None:
    event.set()


class Subscription:
    """A wake-up flag for one stream; set when its workspace may have new events."""

    def __init__(self, workspace_id: str) -> None:
        self.workspace_id = workspace_id
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Mark that new events may exist."""
        self._event.set()

    async def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for a wake-up (True) or the timeout (False); clears the flag."""
        try:
            if timeout_s is None:
                await self._event.wait()
            else:
                await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


class EventNotifier:
    """Holds the process's LISTEN connection and the subscriptions waiting on it."""

    def __init__(
        self, dsn: str, *, poll_interval_s: float = 5.0, reconnect_delay_s: float = 0.5
    ) -> None:
        self._dsn = dsn
        self._poll_interval_s = poll_interval_s
        self._reconnect_delay_s = reconnect_delay_s
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._listener_pid: int | None = None

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend pid of the current LISTEN connection, if connected."""
        return self._listener_pid

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions (for the watch-streams gauge)."""
        return sum(len(s) for s in self._subs.values())

    async def start(self, *, wait: bool = True) -> None:
        """Start listening; with ``wait``, return once the first LISTEN is in place.

        Without ``wait`` (the server: it must start while PostgreSQL is down) nothing is
        lost either: every (re)connect wakes all subscribers, who then re-read the table.
        """
        self._task = asyncio.create_task(self._run(), name="fleetward-event-notifier")
        if wait:
            await asyncio.wait_for(self._connected.wait(), timeout=30)

    async def close(self) -> None:
        """Stop listening and wake every subscriber so that streams can end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._wake_all()

    @contextlib.asynccontextmanager
    async def subscribe(self, workspace_id: str) -> AsyncIterator[Subscription]:
        """Register a subscription for ``workspace_id`` for the duration of the block."""
        sub = Subscription(workspace_id)
        self._subs[workspace_id].add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(workspace_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[workspace_id]

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        for sub in tuple(self._subs.get(str(payload), ())):
            sub.wake()

    def wake_all(self) -> None:
        """Wake every subscriber (e.g. so that streams notice a shutdown)."""
        self._wake_all()

    def _wake_all(self) -> None:
        for subs in tuple(self._subs.values()):
            for sub in tuple(subs):
                sub.wake()

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(names.NOTIFY_CHANNEL, self._on_notify)
                self._listener_pid = conn.get_server_pid()
                self._connected.set()
                # Anything committed while we were not listening is picked up by a re-read.
                self._wake_all()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._poll_interval_s)
                    self._wake_all()
                log.warning("event listener connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("event listener cannot connect: %s", exc)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(self._reconnect_delay_s)
