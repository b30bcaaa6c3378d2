"""The console as an ASGI app: routes, static files and the page defences."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.console import api, pages
from services.console.context import HERE, Console
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
        Route("/", pages.home),
        Route("/healthz", healthz),
        Route("/favicon.ico", no_icon),
        Route("/signin", pages.signin_page, methods=["GET"]),
        Route("/signin", pages.signin_submit, methods=["POST"]),
        Route("/signout", pages.signout, methods=["POST"]),
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
        ],
        lifespan=lifespan,
    )
    app.state.console = console
    return app
