"""What an outsider or a signed-in user tried against the running console, kept as tests.

Each was reproduced against the console before its fix (the first attacker pass on the
console): oversized bodies read whole into memory, numbers and strings that crashed the
request encoder, a token whose ``exp`` crashed every page, a slow page left silently
stale, unlimited live pages, forwarded headers believed from any local client, activity
dates dropped or misread, and a shared live stream ended by the oldest page's token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx2
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from services.common.tokens import mint_user_token
from services.console.api import _page_events
from services.console.app import build_app, server_config
from services.console.backend import Backend
from services.console.identity import COOKIE, Caller
from services.console.live import LiveHub, Message, TooManyPages, _Upstream
from services.console.settings import ConsoleSettings
from tests.conftest import Secrets
from tests.console.conftest import Stack, console_settings
from tests.console.test_live import caller, pause, until
from tests.foundation.conftest import free_port
from tests.servers import running_action_server

ORIGIN = "http://127.0.0.1"
WS = "ac3e0000-0000-4000-8000-000000000001"


async def post_chunks(
    app: Starlette, path: str, chunks: int, headers: dict[str, str]
) -> tuple[int, int]:
    """POST ``chunks`` KiB straight through ASGI; returns the status and how many chunks
    the app pulled before answering."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= chunks:
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": pulled < chunks}

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    return status, pulled


async def test_an_oversized_body_is_refused_while_it_arrives(dev_secrets: Secrets) -> None:
    app = build_app(console_settings(dev_secrets, "127.0.0.1:1"))
    base = {
        "host": "127.0.0.1",
        "origin": ORIGIN,
        "cookie": f"{COOKIE}={dev_secrets.user_token('bob')}",
    }
    execute = f"/w/{WS}/api/execute"
    json_headers = {**base, "content-type": "application/json"}
    status, pulled = await post_chunks(app, execute, 1000, json_headers)  # chunked, 1 MB
    assert (status, pulled <= 17) == (413, True), pulled
    declared = {**json_headers, "content-length": str(200 * 2**20)}
    assert await post_chunks(app, execute, 1000, declared) == (413, 0)
    form = {**base, "content-type": "application/x-www-form-urlencoded"}
    status, pulled = await post_chunks(app, "/signin", 1000, form)
    assert (status, pulled <= 5) == (400, True), pulled


@pytest.fixture
def client(dev_secrets: Secrets) -> TestClient:
    app = build_app(console_settings(dev_secrets, "127.0.0.1:1"))
    test = TestClient(app, base_url=ORIGIN, follow_redirects=False, raise_server_exceptions=False)
    test.cookies.set(COOKIE, dev_secrets.user_token("bob"))
    return test


def test_numbers_out_of_range_and_lone_surrogates_are_a_400(client: TestClient) -> None:
    pause = {"action_type": "pause_agent", "scope": "agent", "target_id": "eng-code-1"}
    budget = {"action_type": "set_budget", "scope": "agent", "target_id": "eng-code-1"}
    bodies = [
        ({**pause, "params": {"duration_minutes": 2**31}}, "out of range"),
        ({**budget, "params": {"monthly_limit_cents": 2**63}}, "out of range"),
        ({**budget, "params": {"monthly_limit_cents": 2**64}}, "out of range"),
    ]
    texts = [json.dumps(body) for body, _ in bodies]
    for field in ("reason", "target_id", "request_id"):
        texts.append(json.dumps(pause)[:-1] + f', "{field}": "a\\ud800b"}}')
    expected = [words for _, words in bodies] + ["not valid Unicode"] * 3
    for text, words in zip(texts, expected, strict=True):
        reply = client.post(
            f"/w/{WS}/api/execute",
            content=text.encode(),
            headers={"Origin": ORIGIN, "Content-Type": "application/json"},
        )
        assert reply.status_code == 400, (text, reply.status_code)
        assert words in reply.json()["error"]["message"]
    rollback = client.post(
        f"/w/{WS}/api/rollback",
        content=b'{"action_id": "\\udfff", "reason": "undo it"}',
        headers={"Origin": ORIGIN, "Content-Type": "application/json"},
    )
    assert rollback.status_code == 400


def test_a_token_with_an_absurd_expiry_reads_as_no_session(client: TestClient) -> None:
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}').decode()
    claims = jwt.utils.base64url_encode(f'{{"sub":"bob","exp":{"9" * 400}}}'.encode()).decode()
    client.cookies.set(COOKIE, f"{header}.{claims}.c2ln")
    reply = client.get(f"/w/{WS}/fleet")
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/signin")


async def test_a_page_that_falls_behind_is_dropped_and_told_so() -> None:
    upstream = _Upstream(WS, "bob")
    slow: asyncio.Queue[Message | None] = asyncio.Queue(256)
    upstream.pages[slow] = Caller("token", "bob", None)
    for seq in range(300):
        upstream.publish({"type": "action", "seq": seq})
    assert slow not in upstream.pages
    items = [slow.get_nowait() for _ in range(slow.qsize())]
    assert items[-1] is None  # its stream ends: the page reconnects and re-renders


async def test_live_pages_are_capped_per_user_and_in_all(
    console_stack: Stack, dev_secrets: Secrets, demo_workspace: uuid.UUID
) -> None:
    hub = LiveHub(Backend(ConsoleSettings(actions_target="127.0.0.1:1")), per_user=2, total=3)
    bob, carol = caller(dev_secrets, "bob"), caller(dev_secrets, "carol")
    try:
        async with hub.subscribe(WS, bob), hub.subscribe(WS, bob):
            with pytest.raises(TooManyPages):
                async with hub.subscribe(WS, bob):
                    pass
            async with hub.subscribe(WS, carol):
                with pytest.raises(TooManyPages):
                    async with hub.subscribe(WS, carol):
                        pass
        async with hub.subscribe(WS, bob):  # released pages count no more
            pass
    finally:
        await hub.close()
    # Through the route: the console's own hub, filled to bob's limit, answers 429.
    console = console_stack.app.state.console
    transport = httpx2.ASGITransport(app=console_stack.app)
    async with contextlib.AsyncExitStack() as pages:
        for _ in range(console.settings.live_per_user):
            await pages.enter_async_context(console.hub.subscribe(str(demo_workspace), bob))
        async with httpx2.AsyncClient(transport=transport, base_url=ORIGIN) as asgi:
            asgi.cookies.set(COOKIE, bob.token)
            reply = await asgi.get(f"/w/{demo_workspace}/live")
    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "RESOURCE_EXHAUSTED"


def test_forwarded_headers_count_only_from_trusted_proxies() -> None:
    default = server_config(ConsoleSettings())
    assert default.proxy_headers is False
    assert default.limit_concurrency == 2500
    assert default.timeout_graceful_shutdown == 5  # open live pages must not stall a SIGTERM
    trusted = server_config(ConsoleSettings(trusted_proxies=frozenset({"10.0.0.5"})))
    assert trusted.proxy_headers is True
    assert trusted.forwarded_allow_ips == ["10.0.0.5"]


async def test_activity_dates_are_read_with_their_offset_and_bad_ones_are_said(
    console_stack: Stack, dev_secrets: Secrets, demo_workspace: uuid.UUID
) -> None:
    action_id = await pause(console_stack.actions_target, dev_secrets, demo_workspace, "eng-code-1")
    just_before = datetime.now(UTC) - timedelta(minutes=2)
    in_india = just_before.astimezone(timezone(timedelta(hours=5, minutes=30)))
    transport = httpx2.ASGITransport(app=console_stack.app)
    async with httpx2.AsyncClient(transport=transport, base_url=ORIGIN) as asgi:
        asgi.cookies.set(COOKIE, dev_secrets.user_token("bob"))
        activity = f"/w/{demo_workspace}/activity"
        offset = await asgi.get(activity, params={"after": in_india.isoformat(timespec="minutes")})
        assert action_id in offset.text  # 2 minutes ago, not 5 h 28 min ahead
        bad = await asgi.get(activity, params={"after": "2026-13-01"})
        assert bad.status_code == 200
        assert "after: &#39;2026-13-01&#39; is not a date and time" in bad.text
        assert action_id not in bad.text  # a filter it could not read lists nothing


async def test_a_newer_token_keeps_the_shared_stream_alive(
    database_dsn: str, console_stack: Stack, dev_secrets: Secrets, demo_workspace: uuid.UUID
) -> None:
    target = f"127.0.0.1:{free_port()}"
    policy = f"127.0.0.1:{console_stack.policy.port}"
    hub = LiveHub(Backend(ConsoleSettings(actions_target=target)))
    short = mint_user_token(dev_secrets.jwt_secret, "bob", ttl_s=4)  # exp is whole seconds
    first = Caller(short, "bob", time.time() + 3)
    second = caller(dev_secrets, "bob")  # the proxy's next, longer-lived token
    try:
        async with (
            running_action_server(database_dsn, policy, dev_secrets, listen_addr=target),
            hub.subscribe(str(demo_workspace), first) as page,
        ):
            await until(page, "status", live=True)
            async with hub.subscribe(str(demo_workspace), second):
                await asyncio.sleep(5)  # the stream's own token has expired by now
                done = await pause(target, dev_secrets, demo_workspace, "eng-code-4")
                seen = await until(page, "action", event_type="action.completed")
                assert seen["action"]["action_id"] == done
    finally:
        await hub.close()


# Second attacker pass: what the first round's fixes left open.


async def test_idle_half_sent_and_stalled_connections_are_closed_in_time(
    dev_secrets: Secrets, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn waits for a request head and body forever; these would hold the connection
    limit. A client that leaves mid-body is no error of ours."""
    settings = replace(
        console_settings(dev_secrets, "127.0.0.1:1"),
        listen_addr=f"127.0.0.1:{free_port()}",
        request_timeout_s=0.5,
    )
    server = uvicorn.Server(server_config(settings))
    serving_task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn has no "started" event to await
            await asyncio.sleep(0.01)
        host, _, port = settings.listen_addr.rpartition(":")
        idle = await asyncio.open_connection(host, int(port))
        half = await asyncio.open_connection(host, int(port))
        half[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        await half[1].drain()
        stalled = await asyncio.open_connection(host, int(port))
        stalled[1].write(  # a whole head, then 3 of the 4,000 body bytes it announced
            b"POST /signin HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n"
            b"\r\nsub"
        )
        await stalled[1].drain()
        for reader, _ in (idle, half, stalled):
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        ok_reader, ok_writer = await asyncio.open_connection(host, int(port))
        ok_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await asyncio.wait_for(ok_reader.readline(), 5)).startswith(b"HTTP/1.1 200")
        ok_writer.close()
    finally:
        server.should_exit = True
        await serving_task
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


def test_a_deeply_nested_body_is_a_400(client: TestClient) -> None:
    reply = client.post(
        f"/w/{WS}/api/execute",
        content=b"[" * 5000 + b"]" * 5000,
        headers={"Origin": ORIGIN, "Content-Type": "application/json"},
    )
    assert reply.status_code == 400
    assert "nested too deeply" in reply.json()["error"]["message"]


def test_an_unforeseen_error_is_answered_and_logged_once(
    dev_secrets: Secrets, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr("services.console.api._body", broken)
    test = TestClient(
        build_app(console_settings(dev_secrets, "127.0.0.1:1")), base_url=ORIGIN
    )  # raise_server_exceptions: nothing may escape to the server (it would log it again)
    test.cookies.set(COOKIE, dev_secrets.user_token("bob"))
    reply = test.post(f"/w/{WS}/api/execute", json={}, headers={"Origin": ORIGIN})
    assert reply.status_code == 500
    assert [r.exc_info is not None for r in caplog.records if r.levelname == "ERROR"] == [True]


async def test_head_on_the_live_stream_holds_nothing(
    console_stack: Stack, dev_secrets: Secrets, demo_workspace: uuid.UUID
) -> None:
    hub = console_stack.app.state.console.hub
    streams = hub.stream_count
    transport = httpx2.ASGITransport(app=console_stack.app)
    async with httpx2.AsyncClient(transport=transport, base_url=ORIGIN) as asgi:
        asgi.cookies.set(COOKIE, dev_secrets.user_token("bob"))
        reply = await asyncio.wait_for(asgi.head(f"/w/{demo_workspace}/live"), 10)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert hub.stream_count == streams


async def test_dates_past_the_calendar_are_a_problem_not_a_500(
    console_stack: Stack, dev_secrets: Secrets, demo_workspace: uuid.UUID
) -> None:
    transport = httpx2.ASGITransport(app=console_stack.app)
    async with httpx2.AsyncClient(transport=transport, base_url=ORIGIN) as asgi:
        asgi.cookies.set(COOKIE, dev_secrets.user_token("bob"))
        for name, value in (
            ("after", "9999-12-31T23:59:59-01:00"),
            ("before", "0001-01-01T00:00:00+01:00"),
        ):
            page = await asgi.get(f"/w/{demo_workspace}/activity", params={name: value})
            assert page.status_code == 200, (name, value)
            assert "is not a date and time" in page.text


def test_the_shared_stream_uses_the_longest_lived_token_of_its_pages() -> None:
    upstream = _Upstream(WS, "carol")
    now = time.time()
    old, new, other = asyncio.Queue(), asyncio.Queue(), asyncio.Queue()  # type: ignore[var-annotated]
    upstream.pages[old] = Caller("old", "carol", now + 60)
    upstream.pages[new] = Caller("new", "carol", now + 3600)
    upstream.pages[other] = Caller("older-but-added-last", "carol", now + 30)
    assert upstream.token == "new"  # not the last one presented


async def test_a_page_ends_at_its_own_tokens_expiry() -> None:
    """A page whose token expired gets no further event, though newer pages keep the
    shared stream up."""
    queue: asyncio.Queue[Message | None] = asyncio.Queue()
    page = _page_events(queue, Caller("short", "alice", time.time() + 0.3))
    assert json.loads((await asyncio.wait_for(anext(page), 3)).split(b"data: ")[1]) == {
        "type": "auth",
        "code": "UNAUTHENTICATED",
        "message": "session expired",
    }
    queue.put_nowait({"type": "action", "seq": 1})
    with pytest.raises(StopAsyncIteration):
        await anext(page)


async def test_sign_out_ends_only_that_sessions_pages(dev_secrets: Secrets) -> None:
    hub = LiveHub(Backend(ConsoleSettings(actions_target="127.0.0.1:1")))
    laptop = Caller(mint_user_token(dev_secrets.jwt_secret, "dana", ttl_s=3600), "dana", None)
    phone = Caller(mint_user_token(dev_secrets.jwt_secret, "dana", ttl_s=3500), "dana", None)
    try:
        async with hub.subscribe(WS, laptop) as on_laptop, hub.subscribe(WS, phone) as on_phone:
            hub.sign_out(phone.token)
            assert None in [on_phone.get_nowait() for _ in range(on_phone.qsize())]
            assert None not in [on_laptop.get_nowait() for _ in range(on_laptop.qsize())]
    finally:
        await hub.close()


def test_two_dev_sessions_minted_in_one_second_are_two_tokens(dev_secrets: Secrets) -> None:
    first = mint_user_token(dev_secrets.jwt_secret, "dana", ttl_s=3600)
    second = mint_user_token(dev_secrets.jwt_secret, "dana", ttl_s=3600)
    assert first != second
