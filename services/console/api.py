"""The dialog's JSON endpoints (execute, rollback, their previews) and the live event stream.

Requests are checked for shape here so a malformed body gets a clear 400; everything
about meaning (reason rules, ids, permissions, states) is the action service's to decide,
and its error comes back unchanged: code, reason, message and details.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fleetward.actions.v1 import actions_pb2
from fleetward.client import (
    ActionParams,
    AsyncActionsClient,
    FleetwardError,
    PauseAgent,
    RestartAgent,
    ResumeAgent,
    SetBudget,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.console.bodies import BodyTooLarge, read_limited
from services.console.context import Console, caller, console_of, workspace_param
from services.console.failures import console_error, error_body, http_status
from services.console.identity import Caller
from services.console.live import Page, TooManyPages, sse
from services.console.views import action_summary

MAX_BODY = 16 * 1024
# A quiet live stream sends a comment this often, so proxies keep it open.
KEEPALIVE_S = 15.0


class BadBody(ValueError):
    """The JSON body is malformed; the message says which field and why."""


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(console_error(status, code, message), status_code=status)


# The protobuf field each number goes into: a value outside it is a 400, not an encoder error.
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _field(
    body: Mapping[str, Any],
    name: str,
    kind: type,
    default: Any,
    *,
    bounds: tuple[int, int] = INT64,
) -> Any:
    value: Any = body.get(name, default)
    if value is default:
        return value
    # bool is an int in Python; a number field must not take true/false (nor the reverse).
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadBody(f"{name} must be a {kind.__name__}")
    if isinstance(value, int) and not bounds[0] <= value <= bounds[1]:
        raise BadBody(f"{name} is out of range")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate such as "\ud800" from a JSON escape
            raise BadBody(f"{name} is not valid Unicode") from None
    return value


def _params(action_type: str, raw: Mapping[str, Any]) -> ActionParams:
    if action_type == "pause_agent":
        return PauseAgent(
            duration_minutes=_field(raw, "duration_minutes", int, None, bounds=INT32),
            indefinite=_field(raw, "indefinite", bool, False),
        )
    if action_type == "resume_agent":
        return ResumeAgent()
    if action_type == "set_budget":
        return SetBudget(
            monthly_limit_cents=_field(raw, "monthly_limit_cents", int, None),
            clear=_field(raw, "clear", bool, False),
        )
    if action_type == "restart_agent":
        return RestartAgent()
    raise BadBody(f"action_type {action_type!r} is not one of the catalog's")


async def _body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadBody("the body must be application/json")
    raw = await read_limited(request, MAX_BODY)
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadBody("the body is not JSON") from None
    except RecursionError:
        raise BadBody("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    return body


def _session(request: Request) -> tuple[Console, Caller, str] | JSONResponse:
    console = console_of(request)
    who = caller(request)
    if who is None or who.expired:
        status = "expired" if who is not None else "missing"
        return _refuse(401, "UNAUTHENTICATED", f"the session is {status}; sign in again")
    workspace = workspace_param(request)
    if workspace is None:
        return _refuse(404, "NOT_FOUND", "no such workspace id")
    return console, who, workspace


def _answer(result: actions_pb2.Action | FleetwardError) -> JSONResponse:
    if isinstance(result, FleetwardError):
        return JSONResponse(error_body(result), status_code=http_status(result))
    return JSONResponse({"action": action_summary(result)})


Call = Callable[[AsyncActionsClient], Awaitable[actions_pb2.Action]]


async def _act(request: Request, read: Callable[[dict[str, Any], str], Call]) -> Response:
    """The dialog's one flow: a session, a well-formed body turned into a client call by
    ``read`` (given the body and the workspace), the call as the caller, its answer.
    """
    session = _session(request)
    if isinstance(session, JSONResponse):
        return session
    console, who, workspace = session
    try:
        call = read(await _body(request), workspace)
    except BodyTooLarge as exc:
        return _refuse(413, "INVALID_ARGUMENT", str(exc))
    except BadBody as exc:
        return _refuse(400, "INVALID_ARGUMENT", str(exc))
    try:
        return _answer(await call(console.backend.client(who)))
    except FleetwardError as exc:
        return _answer(exc)


def _execute_call(body: dict[str, Any], workspace: str) -> Call:
    action_type = _field(body, "action_type", str, "")
    scope = _field(body, "scope", str, "")
    if scope not in ("agent", "department", "fleet"):
        raise BadBody("scope must be agent, department or fleet")
    return functools.partial(
        AsyncActionsClient.execute,
        workspace_id=workspace,
        scope=scope,
        target_id=_field(body, "target_id", str, ""),
        reason=_field(body, "reason", str, ""),
        params=_params(action_type, _field(body, "params", dict, {})),
        request_id=_field(body, "request_id", str, None),
        validate_only=_field(body, "validate_only", bool, False),
        skip_denied=_field(body, "skip_denied", bool, False),
    )


def _rollback_call(body: dict[str, Any], workspace: str) -> Call:
    return functools.partial(
        AsyncActionsClient.rollback,
        workspace_id=workspace,
        action_id=_field(body, "action_id", str, ""),
        reason=_field(body, "reason", str, ""),
        request_id=_field(body, "request_id", str, None),
        validate_only=_field(body, "validate_only", bool, False),
        skip_superseded=_field(body, "skip_superseded", bool, False),
        skip_denied=_field(body, "skip_denied", bool, False),
    )


async def execute(request: Request) -> Response:
    """Run, or preview (``validate_only``), one action as the signed-in user."""
    return await _act(request, _execute_call)


async def rollback(request: Request) -> Response:
    """Roll back, or preview rolling back, one action as the signed-in user."""
    return await _act(request, _rollback_call)


async def _page_events(queue: Page, who: Caller) -> AsyncIterator[bytes]:
    """One page's events until its subscription ends or its own token expires (a page
    gets no event past its token's ``exp``, whatever newer tokens keep the stream up).
    """
    while True:
        left = None if who.expires_at is None else who.expires_at - time.time()
        if left is not None and left <= 0:
            yield sse({"type": "auth", "code": "UNAUTHENTICATED", "message": "session expired"})
            return
        try:
            message = await asyncio.wait_for(queue.get(), min(KEEPALIVE_S, left or KEEPALIVE_S))
        except TimeoutError:
            if who.expires_at is None or who.expires_at > time.time():
                yield b": keep-alive\n\n"
            continue
        if message is None:
            return
        yield sse(message)


async def live(request: Request) -> Response:
    """Server-sent events of the workspace's actions, for the caller's open pages.

    The caller's own token must be able to read the workspace (checked by the action
    service now, and again by the stream the events come from).
    """
    session = _session(request)
    if isinstance(session, JSONResponse):
        return session
    console, who, workspace = session
    try:
        reply = await console.backend.client(who).check_access(
            workspace_id=workspace, targets=[("fleet", "")]
        )
    except FleetwardError as exc:
        return _answer(exc)
    if "actions:read" not in reply.results[0].allowed:
        return _refuse(403, "PERMISSION_DENIED", "requires actions:read on the workspace")
    try:
        console.hub.check_room(who.subject)
    except TooManyPages as exc:
        return _refuse(429, "RESOURCE_EXHAUSTED", f"too many live pages: {exc}")
    if request.method == "HEAD":  # the headers a GET would get, without holding a stream
        return Response(media_type="text/event-stream")

    async def stream() -> AsyncIterator[bytes]:
        try:
            async with console.hub.subscribe(workspace, who) as queue:
                yield b"retry: 2000\n\n"
                async for chunk in _page_events(queue, who):
                    yield chunk
        except TooManyPages as exc:  # lost the race for the last slot since check_room
            yield sse({"type": "refused", "message": f"too many live pages: {exc}"})

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"x-accel-buffering": "no"},
    )
