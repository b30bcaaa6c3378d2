"""The console's live hub: one stream per workspace and user, down/up status, resuming
after the last seq across an action-service restart, and who may join a stream."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator

import httpx2
import jwt
import pytest
from fleetward.client import AsyncActionsClient, ClientConfig, PauseAgent

from services.console.backend import Backend
from services.console.identity import COOKIE, Caller
from services.console.live import LiveHub, Message
from services.console.settings import ConsoleSettings
from tests.conftest import Secrets
from tests.console.conftest import Stack
from tests.foundation.conftest import free_port
from tests.servers import running_action_server

ORIGIN = "http://127.0.0.1"


def caller(secrets: Secrets, subject: str) -> Caller:
    token = secrets.user_token(subject)
    return Caller(token=token, subject=subject, expires_at=time.time() + 3600)


async def until(queue: asyncio.Queue[Message | None], wanted: str, **match: object) -> Message:
    """The next message of type ``wanted`` whose fields equal ``match``."""
    async with asyncio.timeout(20):
        while True:
            message = await queue.get()
            assert message is not None, "the subscription ended"
            if message["type"] == wanted and all(message.get(k) == v for k, v in match.items()):
                return message


async def pause(target: str, secrets: Secrets, workspace: uuid.UUID, agent: str) -> str:
    config = ClientConfig(target=target, token=secrets.user_token("bob"))
    async with AsyncActionsClient(config) as client:
        action = await client.execute(
            workspace_id=str(workspace),
            scope="agent",
            target_id=agent,
            reason="live hub test",
            params=PauseAgent(duration_minutes=5),
        )
    return action.action_id


@pytest.fixture
async def policy_target(console_stack: Stack) -> str:
    return f"127.0.0.1:{console_stack.policy.port}"


async def test_the_stream_reports_down_and_resumes_after_its_last_seq(
    database_dsn: str, policy_target: str, dev_secrets: Secrets, demo_workspace: uuid.UUID
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    hub = LiveHub(Backend(ConsoleSettings(actions_target=target)))
    bob = caller(dev_secrets, "bob")
    try:
        async with (
            running_action_server(database_dsn, policy_target, dev_secrets, listen_addr=target),
            hub.subscribe(str(demo_workspace), bob) as queue,
        ):
            await until(queue, "status", live=True)
            first = await pause(target, dev_secrets, demo_workspace, "eng-code-1")
            seen = await until(queue, "action", event_type="action.completed")
            assert seen["action"]["action_id"] == first
            last_seq = seen["seq"]
            hub_queue = queue
        # The server is gone while the page still listens: the page is told.
        async with hub.subscribe(str(demo_workspace), bob) as queue:
            await until(queue, "status", live=False)
            # Meanwhile another replica acts: the hub must not miss it after reconnecting.
            async with running_action_server(database_dsn, policy_target, dev_secrets) as other:
                missed = await pause(other, dev_secrets, demo_workspace, "eng-code-2")
            async with running_action_server(
                database_dsn, policy_target, dev_secrets, listen_addr=target
            ):
                await until(queue, "status", live=True)
                events: list[Message] = []
                while not events or events[-1]["event_type"] != "action.completed":
                    events.append(await until(queue, "action"))
                assert {e["action"]["action_id"] for e in events} == {missed}
                assert [e["seq"] for e in events] == list(
                    range(last_seq + 1, last_seq + 1 + len(events))
                )
        assert hub_queue is not queue
        assert hub.stream_count == 1  # one stream for bob, however many pages
    finally:
        await hub.close()


@pytest.fixture
async def asgi(console_stack: Stack) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=console_stack.app)
    async with httpx2.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield client


async def test_a_forged_token_cannot_join_someone_elses_stream(
    asgi: httpx2.AsyncClient, console_stack: Stack, demo_workspace: uuid.UUID
) -> None:
    """The console reads ``sub`` without verifying; joining alice's shared stream with a
    token that merely names her must be refused by the action service first."""
    now = int(time.time())
    forged = jwt.encode(
        {"sub": "alice", "iat": now, "nbf": now, "exp": now + 600}, "not-the-secret" * 3
    )
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    claims = f'{{"sub":"alice","exp":{now + 600}}}'.encode()
    unsigned = f"{header}.{base64.urlsafe_b64encode(claims).rstrip(b'=').decode()}."
    streams = console_stack.app.state.console.hub.stream_count
    for token in (forged, unsigned):
        asgi.cookies.set(COOKIE, token)
        reply = await asgi.get(f"/w/{demo_workspace}/live")
        assert reply.status_code == 401, reply.text
        assert reply.json()["error"]["code"] == "UNAUTHENTICATED"
    assert console_stack.app.state.console.hub.stream_count == streams


async def test_a_user_without_read_access_gets_no_stream(
    asgi: httpx2.AsyncClient,
    console_stack: Stack,
    dev_secrets: Secrets,
    demo_workspace: uuid.UUID,
) -> None:
    streams = console_stack.app.state.console.hub.stream_count
    asgi.cookies.set(COOKIE, dev_secrets.user_token("mallory"))  # no role anywhere
    reply = await asgi.get(f"/w/{demo_workspace}/live")
    assert reply.status_code == 403, reply.text
    assert console_stack.app.state.console.hub.stream_count == streams
