"""Issue 10 items 15 and 18 in a real Chromium: only admins see the customer simulator, and a
new connection's generated webhook secret is shown once, with the session's own webhook URL."""

from __future__ import annotations

import uuid

from playwright.async_api import Page, expect

from tests.harness import Tenant
from tests.web.conftest import agent_email, login, screenshot


async def test_an_agent_sees_no_simulator(page: Page, tenant: Tenant) -> None:
    await login(page, tenant.server.base_url, agent_email(tenant))
    await expect(page.get_by_test_id("nav-inbox")).to_be_visible()
    await expect(page.get_by_test_id("nav-simulator")).to_have_count(0)
    await expect(page.get_by_test_id("simulator-toggle")).to_have_count(0)
    await expect(page.get_by_test_id("simulator")).to_have_count(0)
    await page.goto(f"{tenant.server.base_url}/#/simulator")  # typed by hand: the inbox
    await expect(page.get_by_test_id("page-inbox")).to_be_visible()
    await expect(page.get_by_test_id("simulator")).to_have_count(0)
    await screenshot(page, "agent-without-simulator")


async def test_an_admin_sees_the_simulator(page: Page, tenant: Tenant) -> None:
    await login(page, tenant.server.base_url, tenant.admin_email)
    await expect(page.get_by_test_id("nav-simulator")).to_be_visible()
    await expect(page.get_by_test_id("simulator-toggle")).to_be_visible()


async def test_new_connection_shows_its_secret_once(page: Page, tenant: Tenant) -> None:
    await login(page, tenant.server.base_url, tenant.admin_email)
    await page.get_by_test_id("nav-settings").click()
    form = page.get_by_test_id("new-session-form")
    name = f"loja-{uuid.uuid4().hex[:6]}"
    await form.get_by_test_id("new-session-provider").select_option("waha")
    await form.get_by_test_id("new-session-name").fill(name)
    await form.get_by_test_id("new-session-base_url").fill("http://127.0.0.1:9")
    await form.get_by_test_id("new-session-submit").click()
    created = page.get_by_test_id("session-created")
    await expect(created).to_be_visible()
    secret = await created.get_by_test_id("created-webhook-secret").inner_text()
    url = await created.get_by_test_id("created-webhook-url").inner_text()
    assert len(secret) >= 24 and "/api/webhooks/waha/wh_" in url
    card = page.get_by_test_id("session-card").filter(has_text=name)
    await expect(card.get_by_test_id("session-webhook-url")).to_have_text(url)
    await screenshot(page, "new-connection-secret")
    await page.reload()
    await page.get_by_test_id("nav-settings").click()
    await expect(page.get_by_test_id("session-card").filter(has_text=name)).to_be_visible()
    await expect(page.get_by_test_id("session-created")).to_be_hidden()
    assert secret not in await page.content()  # shown once: never again
