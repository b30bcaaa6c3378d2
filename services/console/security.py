"""The page's defences that do not depend on who is asking: headers, Origin, Host.

Every response carries a strict Content-Security-Policy (scripts and styles only from
this origin, no inline script, nothing framed), and a state-changing request must come
from one of the console's own origins, so another site cannot make a signed-in
browser act.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # same-origin, not no-referrer: under no-referrer a form POST says "Origin: null".
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_origin(scope: Scope, headers: Headers) -> str:
    """The origin the request was addressed to: ``scheme://host[:port]``."""
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return f"{scheme}://{headers.get('host', '')}"


class PageSecurity:
    """ASGI middleware: security headers on every response; foreign-origin writes refused."""

    def __init__(self, app: ASGIApp, *, origins: frozenset[str]) -> None:
        self.app = app
        self.origins = origins

    def allowed_origin(self, scope: Scope, headers: Headers) -> bool:
        """Whether a state-changing request came from one of the console's own pages."""
        origin = headers.get("origin")
        if not origin or origin == "null":
            return False
        if self.origins:
            return origin in self.origins
        return origin == request_origin(scope, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection through the checks."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["cache-control"] = "no-store"
            await send(message)

        if scope["method"] not in SAFE_METHODS and not self.allowed_origin(
            scope, Headers(scope=scope)
        ):
            body = json.dumps(
                {
                    "error": {
                        "code": "FORBIDDEN",
                        "reason": "CROSS_ORIGIN",
                        "message": "refused: the request did not come from this console's "
                        "own page (Origin header missing or foreign)",
                    }
                }
            ).encode()
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)
