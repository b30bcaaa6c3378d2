"""Where a visitor comes in and goes out: the home page (a workspace id, or the configured
workspace's fleet), the dev sign-in and sign-out.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.console.bodies import BodyTooLarge, read_limited
from services.console.context import caller, console_of, workspace_param
from services.console.identity import COOKIE, sign_in, sign_out, verified


def _safe_next(value: str | None) -> str:
    """Only a path on this console (``/w/...``), never another site."""
    if value and value.startswith("/w/") and "//" not in value and "\\" not in value:
        return value
    return "/"


async def home(request: Request) -> Response:
    """``/``: the configured workspace's fleet, or a form asking for a workspace id."""
    console = console_of(request)
    wanted = request.query_params.get("workspace", "").strip()
    if wanted:
        request.path_params["workspace_id"] = wanted
        workspace = workspace_param(request)
        if workspace:
            return RedirectResponse(f"/w/{workspace}/fleet", status_code=303)
        return console.render(
            request, "home.html", status_code=400, message="That is not a workspace id (a UUID)."
        )
    if console.settings.workspace_id:
        return RedirectResponse(f"/w/{console.settings.workspace_id}/fleet", status_code=303)
    return console.render(request, "home.html", caller=caller(request), message="")


async def _small_form(request: Request) -> dict[str, str]:
    """A small url-encoded form (the sign-in's two fields); anything else reads as empty."""
    try:
        raw = await read_limited(request, 4096)
    except BodyTooLarge:
        return {}
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}


async def signin_page(request: Request) -> Response:
    """Dev sign-in: pick a demo user (404 unless the dev secrets are in use)."""
    console = console_of(request)
    if console.settings.dev is None:
        return console.render(
            request,
            "error.html",
            status_code=404,
            title="Not found",
            message="Sign-in happens at your company's auth proxy.",
            code="",
        )
    expired = request.query_params.get("expired") == "1"
    return console.render(
        request,
        "signin.html",
        title="Sign in",
        users=console.settings.dev.users,
        next=_safe_next(request.query_params.get("next")),
        message="Your session has expired; sign in again." if expired else "",
    )


async def signin_submit(request: Request) -> Response:
    """Dev sign-in: mint a short-lived token for the chosen demo user into the cookie."""
    console = console_of(request)
    dev = console.settings.dev
    if dev is None:
        return Response(status_code=404)
    form = await _small_form(request)
    subject = form.get("subject", "")
    if subject not in dev.users:
        return console.render(
            request,
            "signin.html",
            status_code=400,
            title="Sign in",
            users=dev.users,
            next="/",
            message="Pick one of the listed users.",
        )
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    sign_in(response, dev, subject, secure=request.url.scheme == "https")
    return response


async def signout(request: Request) -> Response:
    """Drop the dev session cookie and end that user's live pages (their other tabs go
    back to sign-in too: the cookie they shared is gone).
    """
    console = console_of(request)
    response = RedirectResponse("/signin", status_code=303)
    if COOKIE in request.cookies:
        sign_out(response, secure=request.url.scheme == "https")
        token, dev = request.cookies[COOKIE], console.settings.dev
        if dev is not None and verified(token, dev):  # a forged cookie ends nobody's pages
            console.hub.sign_out(token)
    return response
