"""What every route shares: settings, the backend, the live hub, templates; the caller."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fleetward.client import AsyncActionsClient, FleetwardError, Unauthenticated
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from services.console.backend import Backend
from services.console.failures import http_status
from services.console.identity import Caller, caller_of
from services.console.live import LiveHub
from services.console.settings import AuthMode, ConsoleSettings
from services.console.views import relative

HERE = Path(__file__).parent


def templates() -> jinja2.Environment:
    """The templates, every value HTML-escaped unless a template says otherwise (none do)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["relative"] = relative
    return env


@dataclass
class Console:
    """The app's shared parts."""

    settings: ConsoleSettings
    backend: Backend
    hub: LiveHub
    env: jinja2.Environment

    @classmethod
    def build(cls, settings: ConsoleSettings) -> Console:
        """Build the parts (no connection is opened until the first request)."""
        backend = Backend(settings)
        hub = LiveHub(backend, per_user=settings.live_per_user, total=settings.live_total)
        return cls(settings, backend, hub, templates())

    @property
    def dev(self) -> bool:
        """Whether the dev sign-in is on."""
        return self.settings.auth is AuthMode.DEV

    def render(
        self, request: Request, name: str, status_code: int = 200, **values: Any
    ) -> Response:
        """Render a template with what every page needs."""
        values.setdefault("caller", None)
        values.setdefault("roles", ())
        values.setdefault("workspace_id", "")
        values.setdefault("page", "")
        values.setdefault("title", "Fleetward")
        html = self.env.get_template(name).render(dev=self.dev, **values)
        return HTMLResponse(html, status_code=status_code)

    def signin_redirect(self, request: Request, *, expired: bool) -> Response:
        """Back to sign-in (dev), keeping where the user was going."""
        target = f"/signin?next={quote(request.url.path)}"
        return RedirectResponse(target + ("&expired=1" if expired else ""), status_code=303)

    def unauthenticated_page(self, request: Request, message: str) -> Response:
        """Proxy mode: the proxy sent no usable token; reloading asks it for a new one."""
        return self.render(
            request, "error.html", status_code=401, title="Not signed in", message=message, code=""
        )

    def no_session(self, request: Request, caller: Caller | None) -> Response | None:
        """The response for a request without a usable session, or None when it has one."""
        if caller is not None and not caller.expired:
            return None
        expired = caller is not None
        if self.dev:
            return self.signin_redirect(request, expired=expired)
        message = (
            "Your token has expired. Reload the page to get a new one from the sign-in proxy."
            if expired
            else "No bearer token arrived from the sign-in proxy (Authorization header)."
        )
        return self.unauthenticated_page(request, message)

    def error_page(self, request: Request, error: FleetwardError, workspace_id: str) -> Response:
        """A failed read as a page: the service's code, reason and message."""
        if isinstance(error, Unauthenticated):
            if self.dev:
                return self.signin_redirect(request, expired=True)
            return self.unauthenticated_page(request, error.message)
        return self.render(
            request,
            "error.html",
            status_code=http_status(error),
            title="Error",
            workspace_id=workspace_id,
            message=error.message,
            code=f"{error.code.name} {error.reason}".strip(),
        )


def console_of(request: Request) -> Console:
    """The Console behind this request's app."""
    console: Console = request.app.state.console
    return console


def caller(request: Request) -> Caller | None:
    """This request's caller, if any."""
    return caller_of(request, console_of(request).settings)


def workspace_param(request: Request) -> str | None:
    """The ``{workspace_id}`` path parameter in canonical form, or None when not a UUID."""
    raw = request.path_params.get("workspace_id", "")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


@dataclass(frozen=True)
class PageCall:
    """A page request with a session and a workspace: who asks, where, through what."""

    console: Console
    caller: Caller
    workspace_id: str

    @property
    def client(self) -> AsyncActionsClient:
        """The action service, called as this page's user."""
        return self.console.backend.client(self.caller)


def page_call(request: Request) -> PageCall | Response:
    """The page's caller and workspace, or the response for a request without them (sign
    in again, the proxy's missing token, or an id that is not a workspace's).
    """
    console = console_of(request)
    who = caller(request)
    refusal = console.no_session(request, who)
    if refusal is not None or who is None:
        return refusal or console.unauthenticated_page(request, "no session")
    workspace = workspace_param(request)
    if workspace is None:
        return console.render(
            request, "home.html", status_code=404, caller=who, message="No such workspace id."
        )
    return PageCall(console, who, workspace)
