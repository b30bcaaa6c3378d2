"""Live refresh: one WatchActions stream per workspace and signed-in user, fanned out to
that user's open pages as server-sent events.

The stream starts live (no history replay); after a break it resumes after the last
``seq`` it saw, so nothing in between is lost, and the pages are told when it is down
so they can say so and refetch when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fleetward.actions.v1 import actions_pb2
from fleetward.client import FleetwardError, PermissionDenied, Unauthenticated

from services.console.backend import Backend
from services.console.identity import Caller
from services.console.views import action_summary

log = logging.getLogger("fleetward.console.live")

# A stream that has not failed this long after (re)connecting counts as up.
_SETTLE_S = 1.0
# A stream nobody listens to is kept this long (a page navigation reconnects at once).
_LINGER_S = 10.0
# Messages a slow page may fall behind by before it is dropped (it reconnects and refetches).
_QUEUE = 256
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 5.0)

Message = dict[str, Any]


Page = asyncio.Queue[Message | None]


@dataclass
class _Upstream:
    """One user's stream of one workspace, and that user's open pages with the token each
    page brought.
    """

    workspace_id: str
    subject: str
    pages: dict[Page, Caller] = field(default_factory=dict)
    up: bool = False
    last_seq: int = 0
    stream_token: str = ""  # the token the running stream was opened with
    task: asyncio.Task[None] | None = None
    linger: asyncio.TimerHandle | None = None

    @property
    def token(self) -> str:
        """The token of the open page whose token lives longest (the stream outlives no
        page's right to it, and an old page's expiry does not end the others').
        """
        if not self.pages:
            return self.stream_token
        best = max(self.pages.values(), key=lambda c: c.expires_at or float("inf"))
        return best.token

    def publish(self, message: Message) -> None:
        for queue in list(self.pages):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self.pages.pop(queue, None)
                _close(queue)

    def end_pages(self, message: Message, token: str | None = None) -> None:
        """Send ``message`` to the pages (only those that brought ``token``) and end them."""
        for queue, caller in list(self.pages.items()):
            if token is None or caller.token == token:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(message)
                _close(queue)

    def status(self) -> Message:
        return {"type": "status", "live": self.up}


def _close(queue: asyncio.Queue[Message | None]) -> None:
    """End a page's subscription, also one whose queue is full (a page that fell behind
    is dropped: it reconnects and re-renders, so it cannot stay silently stale).
    """
    while True:
        try:
            queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            queue.get_nowait()


class TooManyPages(Exception):
    """The user (or the console) already has as many live pages open as allowed."""


def event_message(event: actions_pb2.ActionEvent) -> Message:
    """What a page gets for one event: enough to know what to refresh and to say who did it."""
    return {
        "type": "action",
        "seq": event.seq,
        "event_type": event.event_type,
        "action": action_summary(event.action),
    }


class LiveHub:
    """The console's live streams, keyed by (workspace, subject)."""

    def __init__(self, backend: Backend, *, per_user: int = 20, total: int = 2000) -> None:
        self._backend = backend
        self._streams: dict[tuple[str, str], _Upstream] = {}
        self._per_user = per_user
        self._total = total
        self._pages: dict[str, int] = {}

    @property
    def stream_count(self) -> int:
        """Upstream WatchActions streams held (for tests and metrics)."""
        return sum(1 for s in self._streams.values() if s.task is not None)

    def check_room(self, subject: str) -> None:
        """Raise :class:`TooManyPages` when ``subject`` may not open another live page."""
        if self._pages.get(subject, 0) >= self._per_user:
            raise TooManyPages(f"{self._per_user} live pages per user are open")
        if sum(self._pages.values()) >= self._total:
            raise TooManyPages(f"{self._total} live pages are open on this console")

    @contextlib.asynccontextmanager
    async def subscribe(
        self, workspace_id: str, caller: Caller
    ) -> AsyncIterator[asyncio.Queue[Message | None]]:
        """A queue of this user's messages for this workspace while the context is open.

        The caller must already have been authorized to read the workspace with its own
        token; the shared stream then runs with the longest-lived token of the user's
        open pages.

        Raises:
            TooManyPages: The user has ``per_user`` live pages open, or the console
                ``total``.
        """
        self.check_room(caller.subject)
        key = (workspace_id, caller.subject)
        upstream = self._streams.get(key)
        if upstream is None:
            upstream = self._streams[key] = _Upstream(workspace_id, caller.subject)
        if upstream.linger is not None:
            upstream.linger.cancel()
            upstream.linger = None
        queue: Page = asyncio.Queue(_QUEUE)
        queue.put_nowait(upstream.status())
        upstream.pages[queue] = caller
        self._pages[caller.subject] = self._pages.get(caller.subject, 0) + 1
        if upstream.task is None:
            upstream.task = asyncio.create_task(self._run(upstream))
        try:
            yield queue
        finally:
            self._pages[caller.subject] -= 1
            if not self._pages[caller.subject]:
                del self._pages[caller.subject]
            upstream.pages.pop(queue, None)
            if not upstream.pages:
                loop = asyncio.get_running_loop()
                upstream.linger = loop.call_later(_LINGER_S, self._stop, key, upstream)

    def _stop(self, key: tuple[str, str], upstream: _Upstream) -> None:
        if upstream.pages or self._streams.get(key) is not upstream:
            return
        del self._streams[key]
        if upstream.task is not None:
            upstream.task.cancel()

    def sign_out(self, token: str) -> None:
        """End the live pages that brought ``token`` (that session signed out; the same
        user's other sessions, in other browsers, keep theirs).
        """
        signed_out = {"type": "auth", "code": "SIGNED_OUT", "message": "signed out"}
        for upstream in self._streams.values():
            upstream.end_pages(signed_out, token)

    async def close(self) -> None:
        """End every stream and every page's subscription."""
        for upstream in list(self._streams.values()):
            if upstream.linger is not None:
                upstream.linger.cancel()
            for queue in list(upstream.pages):
                _close(queue)
            if upstream.task is not None:
                upstream.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upstream.task
        self._streams.clear()

    def _set_up(self, upstream: _Upstream, up: bool) -> None:
        if upstream.up != up:
            upstream.up = up
            upstream.publish(upstream.status())

    async def _run(self, upstream: _Upstream) -> None:
        failures = 0
        while True:
            try:
                await self._follow(upstream)
                failures = 0  # a clean end (server shutdown) is a break like any other
            except (Unauthenticated, PermissionDenied) as exc:
                if upstream.token != upstream.stream_token:
                    continue  # a page brought a newer token since: reconnect with it now
                # The user's token expired or their read permission was taken away: their
                # pages must sign in again; the stream is not retried with a dead token.
                upstream.end_pages({"type": "auth", "code": exc.code.name, "message": exc.message})
                upstream.task = None
                self._streams.pop((upstream.workspace_id, upstream.subject), None)
                return
            except FleetwardError as exc:
                log.info("live stream of %s broke: %s", upstream.workspace_id, exc.code.name)
                failures += 1
            self._set_up(upstream, False)
            delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def _follow(self, upstream: _Upstream) -> None:
        upstream.stream_token = upstream.token
        client = self._backend.client(upstream.stream_token)
        events = client.watch_actions(
            workspace_id=upstream.workspace_id,
            after_seq=upstream.last_seq,
            live_only=upstream.last_seq == 0,
            max_reconnects=0,
        )
        iterator = aiter(events)
        step: asyncio.Future[actions_pb2.ActionEvent] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait({step}, timeout=None if upstream.up else _SETTLE_S)
                if not done:
                    self._set_up(upstream, True)
                try:
                    event = await step
                except StopAsyncIteration:
                    return
                self._set_up(upstream, True)
                upstream.last_seq = event.seq
                upstream.publish(event_message(event))
        finally:
            if step is not None and not step.done():
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
            if isinstance(events, AsyncGenerator):
                await events.aclose()


def sse(message: Message) -> bytes:
    """One server-sent event: its type as the event name, the message as JSON data."""
    data = json.dumps(message, separators=(",", ":"))
    return f"event: {message['type']}\ndata: {data}\n\n".encode()
