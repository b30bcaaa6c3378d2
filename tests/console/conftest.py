"""The console against the real stack: policy and action services on port 0, real
PostgreSQL, the console app served by uvicorn on port 0, and a real Chromium.

The browser comes from ``FLEETWARD_BROWSER``, else Playwright's own Chromium, else the
system's ``chromium``; without one the browser tests are skipped with a message saying how
to get one (``.ci/run`` installs Debian's package, and sets ``FLEETWARD_REQUIRE_BROWSER``
so CI fails rather than skips).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from starlette.applications import Starlette

from services.console.app import build_app
from services.console.settings import AuthMode, ConsoleSettings, DevSignIn
from services.policy.server import PolicyServer
from tests.conftest import NewWorkspace, Secrets
from tests.servers import running_action_server, running_policy_server_handle, write_test_policy

# The demo policy's deny: operators may not pause the code-review agents.
REVIEW_DENY = (
    "p, operator, *, fleet/departments/engineering/agents/eng-review-*, actions:pause_agent, deny"
)
USERS = ("alice", "bob", "carol", "dana")
HOW_TO_GET_A_BROWSER = (
    "no Chromium for the console's browser tests: install Debian's `chromium` "
    "(apt-get install chromium), or run `.venv/bin/playwright install chromium`, "
    "or point FLEETWARD_BROWSER at a Chromium binary"
)


def find_browser() -> str | None:
    """A Chromium executable: FLEETWARD_BROWSER, Playwright's own, or the system's."""
    if os.environ.get("FLEETWARD_BROWSER"):
        return os.environ["FLEETWARD_BROWSER"]
    playwright_home = Path(
        os.environ.get("PLAYWRIGHT_BROWSERS_PATH", Path.home() / ".cache" / "ms-playwright")
    )
    for candidate in sorted(playwright_home.glob("chromium-*/chrome-linux*/chrome")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Stack:
    """The real services behind the console, and the console's own URL."""

    url: str
    actions_target: str
    policy: PolicyServer
    policy_dir: Path
    app: Starlette

    async def set_policy_extra(self, lines: list[str]) -> None:
        """Add ``lines`` to the test policy (replacing earlier extras) and reload it."""
        write_test_policy(self.policy_dir, [REVIEW_DENY, *lines])
        assert await self.policy.reloader.reload(), self.policy.reloader.state.last_reload_error


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def console_settings(secrets: Secrets, actions_target: str) -> ConsoleSettings:
    """Dev sign-in with the session's signing secret, talking to ``actions_target``."""
    return ConsoleSettings(
        listen_addr="127.0.0.1:0",
        actions_target=actions_target,
        auth=AuthMode.DEV,
        dev=DevSignIn(jwt_secret=secrets.jwt_secret, users=USERS),
    )


@pytest.fixture(scope="session")
async def console_stack(
    tmp_path_factory: pytest.TempPathFactory, database_dsn: str, dev_secrets: Secrets
) -> AsyncIterator[Stack]:
    """Policy service, action service and the console, for the whole session."""
    policy_dir = write_test_policy(tmp_path_factory.mktemp("console-policy"), [REVIEW_DENY])
    async with (
        running_policy_server_handle(policy_dir, dev_secrets) as policy,
        running_action_server(
            database_dsn, f"127.0.0.1:{policy.port}", dev_secrets, policy_timeout_ms=5000
        ) as actions,
    ):
        app = build_app(console_settings(dev_secrets, actions))
        async with serving(app) as url:
            yield Stack(url, actions, policy, policy_dir, app)


@pytest.fixture
async def demo_workspace(new_workspace: NewWorkspace, pool: asyncpg.Pool) -> uuid.UUID:
    """A workspace shaped like the demo: eng-code-1..4 and eng-review-1 in engineering,
    sup-chat-1..4 in support."""
    ws = await new_workspace(agents_per_department=4)
    await pool.execute(
        "INSERT INTO agents (workspace_id, agent_id, department_id) "
        "VALUES ($1, 'eng-review-1', 'engineering')",
        ws.id,
    )
    return ws.id


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium for the session."""
    executable = find_browser()
    if executable is None:
        if os.environ.get("FLEETWARD_REQUIRE_BROWSER"):
            pytest.fail(HOW_TO_GET_A_BROWSER)
        pytest.skip(HOW_TO_GET_A_BROWSER)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


SignedIn = Callable[[str], Awaitable[Page]]


@pytest.fixture
async def signed_in(browser: Browser, console_stack: Stack) -> AsyncIterator[SignedIn]:
    """``await signed_in("bob")``: a page in a fresh browser context, signed in as bob."""
    contexts: list[BrowserContext] = []

    async def open_as(user: str) -> Page:
        context = await browser.new_context(base_url=console_stack.url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = await context.new_page()
        await page.goto("/signin")
        await page.click(f"#signin-{user}")
        await expect(page.locator("#who")).to_have_text(user)
        return page

    yield open_as
    for context in contexts:
        await context.close()
