"""The console's routes without a browser: headers, Origin, cookies, sessions, escaping.

Requests that need no action service use Starlette's test client; the escaping test goes
through the real stack with httpx2's ASGI transport (same event loop as the servers).
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
import uuid

import grpc
import httpx2
import jwt
import pytest
from fleetward.actions.v1 import actions_pb2_grpc
from starlette.testclient import TestClient

from services.common.settings import SettingsError
from services.console.app import build_app
from services.console.identity import COOKIE
from services.console.security import CSP
from services.console.settings import AuthMode, ConsoleSettings
from tests.actions.helpers import execute_request
from tests.conftest import Secrets
from tests.console.conftest import Stack, console_settings

ORIGIN = "http://127.0.0.1"
WS = "ac3e0000-0000-4000-8000-000000000001"


@pytest.fixture
def dev_client(dev_secrets: Secrets) -> TestClient:
    """The console in dev mode; its action service is never reached by these tests."""
    app = build_app(console_settings(dev_secrets, "127.0.0.1:1"))
    return TestClient(app, base_url=ORIGIN, follow_redirects=False)


@pytest.fixture
def proxy_client() -> TestClient:
    """The console behind an auth proxy (the default mode)."""
    settings = ConsoleSettings(actions_target="127.0.0.1:1", auth=AuthMode.PROXY)
    return TestClient(build_app(settings), base_url=ORIGIN, follow_redirects=False)


def test_every_page_carries_a_strict_content_security_policy(dev_client: TestClient) -> None:
    page = dev_client.get("/signin")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP
    assert "'unsafe-inline'" not in CSP
    assert "frame-ancestors 'none'" in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    # No inline script anywhere: every <script> has a src.
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page.text))
    assert re.search(r"\son[a-z]+=", page.text) is None  # no inline event handlers


def test_a_post_without_our_origin_is_refused(dev_client: TestClient) -> None:
    form = {"subject": "bob", "next": "/"}
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
        reply = dev_client.post("/signin", data=form, headers=headers)
        assert reply.status_code == 403, headers
        assert reply.json()["error"]["reason"] == "CROSS_ORIGIN"
        assert "set-cookie" not in reply.headers
    api = dev_client.post(
        f"/w/{WS}/api/execute", json={}, headers={"Origin": "https://evil.example"}
    )
    assert api.status_code == 403


def test_dev_sign_in_sets_a_short_httponly_strict_cookie_and_no_token_elsewhere(
    dev_client: TestClient, dev_secrets: Secrets
) -> None:
    reply = dev_client.post(
        "/signin", data={"subject": "bob", "next": f"/w/{WS}/fleet"}, headers={"Origin": ORIGIN}
    )
    assert reply.status_code == 303
    assert reply.headers["location"] == f"/w/{WS}/fleet"
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/", "max-age=3600"} <= attributes
    token = cookie.split(";")[0].split("=", 1)[1]
    claims = jwt.decode(token, dev_secrets.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == "bob"
    assert claims["exp"] - claims["iat"] == 3600
    assert token not in reply.headers["location"]
    assert token not in reply.text


def test_sign_in_refuses_unknown_users_and_foreign_next_urls(dev_client: TestClient) -> None:
    unknown = dev_client.post("/signin", data={"subject": "mallory"}, headers={"Origin": ORIGIN})
    assert unknown.status_code == 400
    assert "set-cookie" not in unknown.headers
    for target in ("https://evil.example/", "//evil.example/w/", "/w/\\evil", "javascript:1"):
        reply = dev_client.post(
            "/signin", data={"subject": "bob", "next": target}, headers={"Origin": ORIGIN}
        )
        assert reply.headers["location"] == "/", target


def test_an_expired_session_goes_back_to_sign_in_with_a_message(
    dev_client: TestClient, dev_secrets: Secrets
) -> None:
    old = jwt.encode(
        {"sub": "bob", "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
        dev_secrets.jwt_secret,
    )
    dev_client.cookies.set(COOKIE, old)
    reply = dev_client.get(f"/w/{WS}/fleet")
    assert reply.status_code == 303
    assert reply.headers["location"] == f"/signin?next=/w/{WS}/fleet&expired=1"
    page = dev_client.get(reply.headers["location"])
    assert "Your session has expired; sign in again." in page.text
    api = dev_client.post(f"/w/{WS}/api/execute", json={}, headers={"Origin": ORIGIN})
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "UNAUTHENTICATED"


def test_behind_a_proxy_there_is_no_sign_in_and_no_cookie_counts(
    proxy_client: TestClient, dev_secrets: Secrets
) -> None:
    assert proxy_client.get("/signin").status_code == 404
    proxy_client.cookies.set(COOKIE, dev_secrets.user_token("alice"))
    page = proxy_client.get(f"/w/{WS}/fleet")
    assert page.status_code == 401
    assert "Authorization header" in page.text


def test_a_foreign_host_header_is_refused(dev_client: TestClient) -> None:
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own Host."""
    assert dev_client.get("/signin", headers={"Host": "evil.example"}).status_code == 400


def test_malformed_dialog_bodies_get_a_clear_400(
    dev_client: TestClient, dev_secrets: Secrets
) -> None:
    dev_client.cookies.set(COOKIE, dev_secrets.user_token("bob"))
    url = f"/w/{WS}/api/execute"
    as_json = {"Content-Type": "application/json"}
    pause = {"action_type": "pause_agent", "scope": "agent"}
    cases: list[tuple[bytes, str]] = [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (json.dumps({**pause, "params": {"duration_minutes": True}}).encode(), "duration_minutes"),
        (json.dumps({"action_type": "drop_tables", "scope": "agent"}).encode(), "catalog"),
        (json.dumps({"action_type": "resume_agent", "scope": "galaxy"}).encode(), "scope"),
        (b"x" * 20000, "over 16384 bytes"),  # 413, below
    ]
    for body, words in cases:
        reply = dev_client.post(url, headers={"Origin": ORIGIN, **as_json}, content=body)
        assert reply.status_code == (413 if len(body) > 16384 else 400), body[:40]
        assert words in reply.json()["error"]["message"], body[:40]


async def test_a_reason_with_markup_is_shown_as_text(
    console_stack: Stack, dev_secrets: Secrets, demo_workspace: uuid.UUID
) -> None:
    transport = httpx2.ASGITransport(app=console_stack.app)
    async with httpx2.AsyncClient(
        transport=transport, base_url=ORIGIN, headers={"Origin": ORIGIN}
    ) as client:
        client.cookies.set(COOKIE, dev_secrets.user_token("bob"))
        attack = "<script>alert(1)</script><img src=x onerror=alert(2)>"
        done = await client.post(
            f"/w/{demo_workspace}/api/execute",
            json={
                "action_type": "pause_agent",
                "scope": "agent",
                "target_id": "eng-code-1",
                "reason": attack,
                "params": {"duration_minutes": 5},
            },
        )
        assert done.status_code == 200, done.text
        action_id = done.json()["action"]["action_id"]
        for path in (f"/w/{demo_workspace}/activity", f"/w/{demo_workspace}/actions/{action_id}"):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert attack not in page.text
            assert "<img src=x" not in page.text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_no_token_reaches_a_log_line(
    console_stack: Stack,
    dev_secrets: Secrets,
    demo_workspace: uuid.UUID,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = dev_secrets.user_token("bob")
    bad = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, "wrong-secret" * 4)
    transport = httpx2.ASGITransport(app=console_stack.app)
    with caplog.at_level("DEBUG"):
        async with httpx2.AsyncClient(
            transport=transport, base_url=ORIGIN, headers={"Origin": ORIGIN}
        ) as client:
            for session in (token, bad):
                client.cookies.set(COOKIE, session)
                await client.get(f"/w/{demo_workspace}/fleet")
                await client.post(
                    f"/w/{demo_workspace}/api/execute",
                    json={
                        "action_type": "resume_agent",
                        "scope": "agent",
                        "target_id": "eng-code-1",
                        "reason": "log check",
                    },
                )
    assert caplog.records  # something was logged, and none of it carries a token
    for secret in (token, bad, token.split(".")[2], bad.split(".")[2]):
        assert secret not in caplog.text


def test_an_unexpected_failure_answers_with_a_correlation_id_only(
    dev_secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(request: object) -> object:
        raise RuntimeError("internal detail: /srv/secret.py line 3")

    monkeypatch.setattr("services.console.api._body", broken)
    app = build_app(console_settings(dev_secrets, "127.0.0.1:1"))
    client = TestClient(app, base_url=ORIGIN, raise_server_exceptions=False)
    client.cookies.set(COOKIE, dev_secrets.user_token("bob"))
    reply = client.post(f"/w/{WS}/api/execute", json={}, headers={"Origin": ORIGIN})
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["code"] == "INTERNAL"
    assert re.search(r"correlation id [0-9a-f]{12}", error["message"])
    assert "secret" not in reply.text
    assert reply.headers["content-security-policy"] == CSP


async def test_the_action_page_shows_its_trace_id_and_links_it_when_configured(
    console_stack: Stack, dev_secrets: Secrets, demo_workspace: uuid.UUID
) -> None:
    trace_id = secrets.token_hex(16)
    auth = ("authorization", f"Bearer {dev_secrets.user_token('bob')}")
    async with grpc.aio.insecure_channel(console_stack.actions_target) as channel:
        pause = await actions_pb2_grpc.ActionServiceStub(channel).Execute(
            execute_request(demo_workspace, "pause_agent", target="eng-code-1"),
            metadata=[auth, ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")],
        )
    path = f"/w/{demo_workspace}/actions/{pause.action_id}"
    template = "https://traces.example.com/trace/{trace_id}?from=fleetward"
    linked = dataclasses.replace(
        console_settings(dev_secrets, console_stack.actions_target), trace_url=template
    )
    for app, link in ((console_stack.app, None), (build_app(linked), template)):
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=ORIGIN
        ) as client:
            client.cookies.set(COOKIE, dev_secrets.user_token("bob"))
            page = await client.get(path)
        assert page.status_code == 200, page.text
        assert f"<code>{trace_id}</code>" in page.text
        hrefs = re.findall(r'href="(https://traces[^"]*)"', page.text)
        expected = [] if link is None else [link.replace("{trace_id}", trace_id)]
        assert [h.replace("&amp;", "&") for h in hrefs] == expected


@pytest.mark.parametrize(
    "template",
    [
        "javascript:alert(1)//{trace_id}",
        "data:text/html,{trace_id}",
        "https://traces.example.com/no-placeholder",
        "//traces.example.com/{trace_id}",
        "ftp://traces.example.com/{trace_id}",
        "https:traces.example.com/{trace_id}",
        "https:///{trace_id}",
        # Found by the attacker pass: accepted, then escaped on the page (no XSS), but a
        # template that is not a URL is a configuration mistake to stop at start.
        'https://x/{trace_id}"onmouseover="alert(1)',
        "https://x/{trace_id}'><script>alert(1)</script>",
        "https://x/{trace_id}\njavascript:alert(1)",
        "http://x/ {trace_id}\ttab",
        "https://x\\evil/{trace_id}",
        # The trace id in the user-info or host: the link would go elsewhere.
        "https://{trace_id}@evil.example/",
        "https://{trace_id}.evil.example/",
    ],
)
def test_a_trace_url_that_is_not_an_http_link_with_the_id_stops_the_start(template: str) -> None:
    env = {"FLEETWARD_CONSOLE_TRACE_URL": template}
    with pytest.raises(SettingsError, match="FLEETWARD_CONSOLE_TRACE_URL"):
        ConsoleSettings.from_env(env)


@pytest.mark.parametrize(
    "template",
    [
        "https://jaeger.example.com/trace/{trace_id}",
        "http://127.0.0.1:16686/trace/{trace_id}?uiFind=x&y=1#top",
        "https://grafana.example.com/explore?left=%7B%22query%22:%22{trace_id}%22%7D",
    ],
)
def test_a_tracing_backends_url_is_accepted(template: str) -> None:
    env = {"FLEETWARD_CONSOLE_TRACE_URL": template}
    assert ConsoleSettings.from_env(env).trace_url == template


def test_only_a_trace_id_goes_into_the_trace_link() -> None:
    settings = ConsoleSettings(trace_url="https://t.example.com/{trace_id}")
    assert settings.trace_link("0af7651916cd43dd8448eb211c80319c") == (
        "https://t.example.com/0af7651916cd43dd8448eb211c80319c"
    )
    for value in ("", "0AF7651916CD43DD8448EB211C80319C", '"><script>', "0af7" * 8 + "/x"):
        assert settings.trace_link(value) is None
