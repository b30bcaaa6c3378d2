"""The console as an ASGI app: routes, static files and the page defences."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.console import api, entry, pages
from services.console.context import HERE, Console
from services.console.guard import TimedH11Protocol, Unforeseen
from services.console.security import PageSecurity
from services.console.settings import ConsoleSettings

WORKSPACE = "/w/{workspace_id}"


async def healthz(request: Request) -> Response:
    """Liveness: the console answers (it holds no state worth checking)."""
    return PlainTextResponse("ok")


async def no_icon(request: Request) -> Response:
    """No favicon: an empty answer instead of a 404 in every browser console."""
    return Response(status_code=204)


def build_app(settings: ConsoleSettings) -> Starlette:
    """The console app for ``settings``; its shared parts are ``app.state.console``."""
    console = Console.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await console.hub.close()
            await console.backend.close()

    routes = [
        Route("/", entry.home),
        Route("/healthz", healthz),
        Route("/favicon.ico", no_icon),
        Route("/signin", entry.signin_page, methods=["GET"]),
        Route("/signin", entry.signin_submit, methods=["POST"]),
        Route("/signout", entry.signout, methods=["POST"]),
        Route(f"{WORKSPACE}/fleet", pages.fleet),
        Route(f"{WORKSPACE}/activity", pages.activity),
        Route(f"{WORKSPACE}/actions/{{action_id}}", pages.action_detail),
        Route(f"{WORKSPACE}/api/execute", api.execute, methods=["POST"]),
        Route(f"{WORKSPACE}/api/rollback", api.rollback, methods=["POST"]),
        Route(f"{WORKSPACE}/live", api.live),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=sorted(settings.allowed_hosts)),
            Middleware(PageSecurity, origins=settings.origins),
            Middleware(Unforeseen),
        ],
        lifespan=lifespan,
    )
    app.state.console = console
    return app


def server_config(settings: ConsoleSettings) -> uvicorn.Config:
    """How uvicorn serves the console for ``settings``."""
    host, _, port = settings.listen_addr.rpartition(":")
    return uvicorn.Config(
        build_app(settings),
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        log_level="info",
        # The access log shows paths and statuses; tokens travel only in headers and
        # cookies, which it never prints.
        access_log=True,
        # X-Forwarded-* only from the proxies named: believed from anyone local, they
        # would let any local client claim https (and another origin) or another address.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=sorted(settings.trusted_proxies) or None,
        limit_concurrency=settings.max_connections,
        # Idle, half-sent and stalled connections would hold that limit: close them in time.
        http=_timed_protocol(settings.request_timeout_s),
        timeout_keep_alive=5,
        # Live pages never end by themselves: on SIGTERM give them 5 s, then close them
        # (the pages reconnect to another replica, or to this one when it is back).
        timeout_graceful_shutdown=5,
        server_header=False,
    )


def _timed_protocol(seconds: float) -> type[TimedH11Protocol]:
    return type("ConsoleH11Protocol", (TimedH11Protocol,), {"request_timeout": seconds})
