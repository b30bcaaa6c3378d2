"""What keeps one bad request or one idle client from costing the console more than itself.

``Unforeseen`` answers an exception no route handled with a correlation id (one log line
with the traceback; nothing internal in the answer). ``TimedH11Protocol`` closes a
connection whose request (head and body) has not fully arrived in time: uvicorn's own
h11 protocol waits for either forever, so idle, half-sent or stalled connections would
otherwise hold the console's connection limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import h11
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.console.failures import console_error

log = logging.getLogger("fleetward.console")


class Unforeseen:
    """ASGI middleware: an exception that escapes a route becomes a 500 with a correlation
    id, logged once (it is not re-raised to the server, which would log it again).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection through the guard."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except ClientDisconnect:  # the client left mid-request: nothing to answer or report
            log.debug("client left during %s %r", scope["method"], scope["path"])
        except Exception:
            correlation = uuid.uuid4().hex[:12]
            # repr(): the path is the client's, and must not start lines of its own here.
            log.exception(
                "unexpected error %s on %s %r", correlation, scope["method"], scope["path"]
            )
            if started:  # too late for a status: end the response where it is
                return
            message = f"the console failed unexpectedly (correlation id {correlation})"
            body = json.dumps(console_error(500, "INTERNAL", message)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request (its head and its
    body) has not fully arrived within ``request_timeout`` seconds of the connection (or of
    its last response). A request that has fully arrived is never cut off: the app may
    take its time, and a live stream may last.
    """

    request_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_timeout, self._overdue)

    def _overdue(self) -> None:
        waiting_for_head = self.cycle is None or self.cycle.response_complete
        receiving_body = self.conn.their_state is h11.SEND_BODY
        if (waiting_for_head or receiving_body) and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request."""
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        """Start the clock for the next request on a kept-alive connection."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)
