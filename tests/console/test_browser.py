"""The console in a real Chromium against the real stack: the dialog, its preview and
confirm, toasts with undo, disabled buttons with reasons, live refresh across users."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from fleetward.client import AsyncActionsClient, ClientConfig, PauseAgent
from playwright.async_api import Browser, Page, Route, expect

from services.console.app import build_app
from tests.conftest import Secrets
from tests.console.conftest import SignedIn, Stack, console_settings, serving
from tests.foundation.conftest import free_port
from tests.servers import running_action_server

pytestmark = pytest.mark.timeout(90)

REASON = "investigating a cost spike"


async def fleet(page: Page, workspace: uuid.UUID, *, base: str = "") -> None:
    """Open the workspace's fleet page and wait until its live stream is up."""
    await page.goto(f"{base}/w/{workspace}/fleet")
    await expect(page.locator("body")).to_have_attribute("data-live", "yes")
    # A marker that a reload would drop: "without a reload" is checked against it.
    await page.evaluate("window.fleetwardMarker = 1")


async def still_same_page(page: Page) -> bool:
    marker: object = await page.evaluate("window.fleetwardMarker")
    return marker == 1


def button(page: Page, label: str) -> object:
    return page.get_by_role("button", name=label, exact=True)


async def agent_statuses(pool: asyncpg.Pool, workspace: uuid.UUID) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT agent_id, status FROM agents WHERE workspace_id = $1", workspace
    )
    return {r["agent_id"]: r["status"] for r in rows}


async def test_bob_pauses_an_agent_sees_it_paused_and_undoes_it(
    signed_in: SignedIn, demo_workspace: uuid.UUID, pool: asyncpg.Pool
) -> None:
    page = await signed_in("bob")
    await fleet(page, demo_workspace)
    row = page.locator("#agent-eng-code-2")
    await expect(row.locator(".status")).to_have_text("active")

    await page.get_by_role("button", name="Pause agent eng-code-2", exact=True).click()
    dialog = page.locator("#action-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#dialog-title")).to_have_text("Pause agent eng-code-2")
    await expect(page.locator("#dialog-summary")).to_contain_text("for 30 minutes")
    await expect(page.locator("#preview-changes")).to_contain_text("eng-code-2: active → paused")
    await expect(page.locator("#skip-denied-label")).to_be_hidden()  # nobody is left out
    await expect(page.locator("#skip-superseded-label")).to_be_hidden()
    confirm = page.locator("#dialog-confirm")
    await expect(confirm).to_be_disabled()  # no reason yet
    await page.fill("#dialog-reason", "ab")
    await expect(confirm).to_be_disabled()  # under 3 characters
    await page.fill("#dialog-reason", REASON)
    await expect(confirm).to_be_enabled()

    # Hold the real request until the loading state has been seen.
    held: list[Route] = []
    arrived = asyncio.Event()

    async def hold(route: Route) -> None:
        body = route.request.post_data_json or {}
        if body.get("validate_only"):
            await route.continue_()
        else:
            held.append(route)
            arrived.set()

    await page.route("**/api/execute", hold)
    await confirm.click()
    await expect(confirm).to_be_disabled()
    await expect(confirm).to_have_class("primary loading")
    await expect(confirm).to_have_text("Pausing…")
    await asyncio.wait_for(arrived.wait(), 10)
    assert len(held) == 1
    await held[0].continue_()

    toast = page.locator(".toast-success")
    await expect(toast).to_contain_text("eng-code-2 active → paused")
    await expect(dialog).to_be_hidden()
    await expect(row.locator(".status")).to_have_text("paused")
    assert await still_same_page(page)
    assert (await agent_statuses(pool, demo_workspace))["eng-code-2"] == "paused"

    await toast.get_by_role("button", name="Undo").click()
    await expect(page.locator("#dialog-title")).to_have_text("Roll back pause of agent eng-code-2")
    await expect(page.locator("#preview-changes")).to_contain_text("eng-code-2: paused → active")
    await page.fill("#dialog-reason", "false alarm")
    await page.locator("#dialog-confirm").click()
    await expect(page.locator(".toast-success").last).to_contain_text("Rolled back")
    await expect(row.locator(".status")).to_have_text("active")
    assert await still_same_page(page)
    assert (await agent_statuses(pool, demo_workspace))["eng-code-2"] == "active"


async def test_carol_sees_every_action_button_disabled_with_the_reason(
    signed_in: SignedIn, demo_workspace: uuid.UUID
) -> None:
    page = await signed_in("carol")
    await fleet(page, demo_workspace)
    buttons = page.locator("button.act")
    count = await buttons.count()
    assert count >= 10 * 4  # every agent, department and the fleet has its buttons
    for i in range(count):
        await expect(buttons.nth(i)).to_be_disabled()
    pause = page.get_by_role("button", name="Pause agent eng-code-2", exact=True)
    await expect(pause).to_have_attribute(
        "title", "requires actions:pause_agent; your roles: viewer"
    )


async def test_bob_pauses_engineering_skipping_the_review_agent_he_may_not_pause(
    signed_in: SignedIn, demo_workspace: uuid.UUID, pool: asyncpg.Pool
) -> None:
    page = await signed_in("bob")
    await fleet(page, demo_workspace)
    await page.get_by_role("button", name="Pause department engineering", exact=True).click()
    await expect(page.locator("#preview-denied")).to_contain_text("eng-review-1")
    await expect(page.locator("#preview-changes")).to_contain_text("eng-code-1: active → paused")
    await expect(page.locator("#preview-changes")).not_to_contain_text("eng-review-1")
    await page.fill("#dialog-reason", REASON)
    confirm = page.locator("#dialog-confirm")
    await expect(confirm).to_be_disabled()  # until the denied agent is explicitly skipped
    await page.get_by_label("Skip the agents I may not change, and act on the rest").check()
    await expect(confirm).to_be_enabled()
    await confirm.click()
    await expect(page.locator(".toast-success")).to_contain_text("1 skipped")
    for agent in ("eng-code-1", "eng-code-2", "eng-code-3", "eng-code-4"):
        await expect(page.locator(f"#agent-{agent} .status")).to_have_text("paused")
    await expect(page.locator("#agent-eng-review-1 .status")).to_have_text("active")
    states = await agent_statuses(pool, demo_workspace)
    assert states["eng-review-1"] == "active"
    assert states["sup-chat-1"] == "active"
    assert [states[f"eng-code-{i}"] for i in range(1, 5)] == ["paused"] * 4


async def test_alice_sees_bobs_action_appear_live(
    signed_in: SignedIn, demo_workspace: uuid.UUID
) -> None:
    alice = await signed_in("alice")
    await fleet(alice, demo_workspace)
    bob = await signed_in("bob")
    await fleet(bob, demo_workspace)
    await bob.get_by_role("button", name="Pause agent eng-code-3", exact=True).click()
    await bob.fill("#dialog-reason", REASON)
    await expect(bob.locator("#dialog-confirm")).to_be_enabled()
    async with bob.expect_response(
        lambda r: (
            r.url.endswith("/api/execute")
            and not (r.request.post_data_json or {}).get("validate_only")
        )
    ):
        await bob.locator("#dialog-confirm").click()
    acted = time.monotonic()
    await expect(alice.locator("#agent-eng-code-3 .status")).to_have_text("paused")
    seen = time.monotonic()
    print(f"\nlive refresh: alice's row showed bob's pause {1000 * (seen - acted):.0f} ms after it")
    assert await still_same_page(alice)


async def test_a_double_click_on_confirm_creates_one_action(
    signed_in: SignedIn, demo_workspace: uuid.UUID, pool: asyncpg.Pool
) -> None:
    page = await signed_in("bob")
    await fleet(page, demo_workspace)
    await page.get_by_role("button", name="Pause agent eng-code-4", exact=True).click()
    await page.fill("#dialog-reason", REASON)
    await expect(page.locator("#dialog-confirm")).to_be_enabled()
    await page.locator("#dialog-confirm").dblclick()
    await expect(page.locator(".toast-success")).to_contain_text("eng-code-4 active → paused")
    count = await pool.fetchval(
        "SELECT count(*) FROM action_audit_log WHERE workspace_id = $1 "
        "AND action_type = 'pause_agent'",
        demo_workspace,
    )
    assert count == 1


async def test_a_policy_change_between_preview_and_confirm_shows_the_denial(
    signed_in: SignedIn, demo_workspace: uuid.UUID, console_stack: Stack, pool: asyncpg.Pool
) -> None:
    page = await signed_in("bob")
    await fleet(page, demo_workspace)
    await page.get_by_role("button", name="Pause agent sup-chat-1", exact=True).click()
    await expect(page.locator("#preview-changes")).to_contain_text("sup-chat-1: active → paused")
    await console_stack.set_policy_extra(
        [f"p, operator, {demo_workspace}, fleet/**, actions:pause_agent, deny"]
    )
    try:
        await page.fill("#dialog-reason", REASON)
        await page.locator("#dialog-confirm").click()
        error = page.locator(".toast-error")
        await expect(error).to_contain_text("PERMISSION_DENIED INSUFFICIENT_PERMISSIONS")
        await expect(error).to_contain_text("actions:pause_agent")
    finally:
        await console_stack.set_policy_extra([])
    await expect(page.locator("#action-dialog")).to_be_visible()  # still open to retry
    assert (await agent_statuses(pool, demo_workspace))["sup-chat-1"] == "active"


async def test_escape_closes_the_dialog_and_focus_returns_to_its_button(
    signed_in: SignedIn, demo_workspace: uuid.UUID
) -> None:
    page = await signed_in("bob")
    await fleet(page, demo_workspace)
    opener = page.get_by_role("button", name="Pause agent eng-code-1", exact=True)
    await opener.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#action-dialog")).to_be_visible()
    await expect(page.locator("#dialog-reason")).to_be_focused()
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll(
             '#action-dialog input, #action-dialog textarea, #action-dialog button')]
           .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                        && !e.textContent.trim())
           .map(e => e.id || e.outerHTML)"""
    )
    assert unlabelled == []
    await page.keyboard.press("Escape")
    await expect(page.locator("#action-dialog")).to_be_hidden()
    await expect(opener).to_be_focused()


async def test_a_viewer_cannot_act_by_crafting_requests(
    signed_in: SignedIn, demo_workspace: uuid.UUID, pool: asyncpg.Pool
) -> None:
    page = await signed_in("carol")
    await fleet(page, demo_workspace)
    answer = await page.evaluate(
        """async (ws) => {
             const res = await fetch(`/w/${ws}/api/execute`, {
               method: 'POST', headers: {'Content-Type': 'application/json'},
               body: JSON.stringify({action_type: 'pause_agent', scope: 'fleet', target_id: '',
                                     reason: 'crafted by hand', params: {indefinite: true}})});
             return {status: res.status, body: await res.json()};
           }""",
        str(demo_workspace),
    )
    assert answer["status"] == 403
    assert answer["body"]["error"]["reason"] == "INSUFFICIENT_PERMISSIONS"
    assert set((await agent_statuses(pool, demo_workspace)).values()) == {"active"}


async def _pause_as_bob(stack: Stack, secrets: Secrets, workspace: uuid.UUID, agent: str) -> str:
    config = ClientConfig(target=stack.actions_target, token=secrets.user_token("bob"))
    async with AsyncActionsClient(config) as client:
        action = await client.execute(
            workspace_id=str(workspace),
            scope="agent",
            target_id=agent,
            reason=REASON,
            params=PauseAgent(duration_minutes=30),
        )
    return action.action_id


async def test_the_activity_list_shows_another_users_action_live(
    signed_in: SignedIn, demo_workspace: uuid.UUID, console_stack: Stack, dev_secrets: Secrets
) -> None:
    alice = await signed_in("alice")
    await alice.goto(f"/w/{demo_workspace}/activity")
    await expect(alice.locator("body")).to_have_attribute("data-live", "yes")
    await alice.evaluate("window.fleetwardMarker = 1")
    await expect(alice.locator("table.activity tbody")).to_contain_text("No actions match.")
    action_id = await _pause_as_bob(console_stack, dev_secrets, demo_workspace, "sup-chat-2")
    row = alice.locator(f'tr[data-action="{action_id}"]')
    await expect(row).to_contain_text("bob")
    await expect(row).to_contain_text("completed")
    assert await still_same_page(alice)


async def test_the_action_detail_shows_its_events_and_rolls_back(
    signed_in: SignedIn,
    demo_workspace: uuid.UUID,
    console_stack: Stack,
    dev_secrets: Secrets,
    pool: asyncpg.Pool,
) -> None:
    action_id = await _pause_as_bob(console_stack, dev_secrets, demo_workspace, "sup-chat-3")
    page = await signed_in("bob")
    await page.goto(f"/w/{demo_workspace}/actions/{action_id}")
    detail = page.locator(".detail")
    await expect(detail).to_contain_text("bob (roles: operator, viewer)")
    await expect(detail).to_contain_text(REASON)
    stored = await pool.fetch(
        "SELECT seq, event_type, hash FROM action_events WHERE action_id = $1 ORDER BY seq",
        uuid.UUID(action_id),
    )
    events = page.locator("table.events tbody tr")
    await expect(events).to_have_count(len(stored))
    for i, event in enumerate(stored):
        await expect(events.nth(i)).to_contain_text(str(event["seq"]))
        await expect(events.nth(i)).to_contain_text(event["event_type"])
        await expect(events.nth(i)).to_contain_text(event["hash"])
    await page.locator("#rollback-button").click()
    await expect(page.locator("#preview-changes")).to_contain_text("sup-chat-3: paused → active")
    await page.fill("#dialog-reason", "undo from the detail page")
    await page.locator("#dialog-confirm").click()
    await expect(page.locator(".toast-success")).to_contain_text("Rolled back")
    await expect(detail).to_contain_text("Rolled back by")  # the page re-rendered live
    await expect(page.locator("#rollback-button")).to_be_disabled()
    assert (await agent_statuses(pool, demo_workspace))["sup-chat-3"] == "active"


async def test_a_banner_says_when_live_updates_are_down_and_the_page_catches_up(
    browser: Browser,
    database_dsn: str,
    console_stack: Stack,
    dev_secrets: Secrets,
    demo_workspace: uuid.UUID,
) -> None:
    """The action service goes away under an open page and comes back: the banner shows,
    then hides, and what happened meanwhile is on the page without a reload."""
    target = f"127.0.0.1:{free_port()}"
    policy = f"127.0.0.1:{console_stack.policy.port}"
    app = build_app(console_settings(dev_secrets, target))
    context = await browser.new_context()
    try:
        async with serving(app) as url:
            async with running_action_server(database_dsn, policy, dev_secrets, listen_addr=target):
                page = await context.new_page()
                await page.goto(f"{url}/signin")
                await page.click("#signin-bob")
                await fleet(page, demo_workspace, base=url)
                await expect(page.locator("#live-banner")).to_be_hidden()
            banner = page.locator("#live-banner")
            await expect(banner).to_be_visible()
            await expect(banner).to_contain_text("reconnecting")
            # Meanwhile another replica pauses an agent.
            await _pause_as_bob(console_stack, dev_secrets, demo_workspace, "sup-chat-4")
            async with running_action_server(database_dsn, policy, dev_secrets, listen_addr=target):
                await expect(banner).to_be_hidden(timeout=20_000)
                await expect(page.locator("#agent-sup-chat-4 .status")).to_have_text("paused")
                assert await still_same_page(page)
    finally:
        await context.close()
