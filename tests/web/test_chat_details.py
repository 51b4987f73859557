"""Chat details in a real Chromium: history pages, typing, token refresh, English."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from tests.harness import Tenant
from tests.web.conftest import login

PHONE = "5511900001111"


async def conversation_id(tenant: Tenant, name: str) -> str:
    async with tenant.http() as client:
        convs = (
            await client.get(f"/api/v1/conversations?search={name}", headers=tenant.auth())
        ).json()
    return str(convs[0]["id"])


async def test_older_messages_load_on_scroll_up(page: Page, tenant: Tenant) -> None:
    for n in range(1, 61):
        await tenant.customer_says(f"mensagem {n:02d}", phone=PHONE, push_name="Lia")
    await login(page, tenant.server.base_url, tenant.admin_email)
    await page.get_by_test_id("conversation-item").filter(has_text="Lia").click()
    texts = page.get_by_test_id("message-text")
    await expect(texts).to_have_count(50)
    await expect(texts.first).to_have_text("mensagem 11")
    await expect(texts.last).to_be_in_viewport()  # opened at the newest message
    await page.get_by_test_id("chat-scroll").evaluate("el => { el.scrollTop = 0; }")
    await expect(texts).to_have_count(60)
    await expect(texts.first).to_have_text("mensagem 01")
    await expect(texts.last).to_have_text("mensagem 60")


async def test_typing_indicator_follows_another_agent(page: Page, tenant: Tenant) -> None:
    await tenant.customer_says("Olá", phone=PHONE, push_name="Mário")
    conv = await conversation_id(tenant, "Mário")
    await login(page, tenant.server.base_url, tenant.admin_email)
    await page.get_by_test_id("conversation-item").filter(has_text="Mário").click()
    indicator = page.get_by_test_id("typing-indicator")
    await expect(indicator).to_be_hidden()
    async with httpx.AsyncClient(base_url=tenant.server.base_url) as client:
        for flag in ("true", "false"):
            response = await client.post(
                f"/api/v1/conversations/{conv}/typing?is_typing={flag}",
                headers=tenant.auth(tenant.agent_token),
            )
            assert response.status_code == 200, response.text
            if flag == "true":
                await expect(indicator).to_have_text("digitando…")
                await expect(indicator).to_be_visible()
    await expect(indicator).to_be_hidden()


async def test_reload_keeps_the_session_without_tokens_in_reach_of_scripts(
    page: Page, tenant: Tenant
) -> None:
    await tenant.customer_says("Oi", phone=PHONE, push_name="Nina")
    await login(page, tenant.server.base_url, tenant.admin_email)
    stored = await page.evaluate(
        "() => [document.cookie, JSON.stringify(Object.entries(localStorage)),"
        " JSON.stringify(Object.entries(sessionStorage))]"
    )
    assert not any("eyJ" in where for where in stored), stored  # no JWT a script could read
    cookies = await page.context.cookies()
    refresh = next(c for c in cookies if c["name"] == "atende_refresh")
    assert refresh["httpOnly"] and refresh["secure"] and refresh["sameSite"] == "Strict"
    assert refresh["path"] == "/api/v1/auth"
    await page.reload()  # the access token was only in memory: the cookie brings a new one
    await expect(page.get_by_test_id("conversation-item").filter(has_text="Nina")).to_be_visible()
    await expect(page.get_by_test_id("connection-indicator")).to_have_attribute(
        "data-state", "online"
    )
    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("page-login")).to_be_visible()
    assert not [c for c in await page.context.cookies() if c["name"] == "atende_refresh"]
    await page.reload()
    await expect(page.get_by_test_id("page-login")).to_be_visible()


async def test_english_on_request(page: Page, tenant: Tenant) -> None:
    await login(page, tenant.server.base_url, tenant.admin_email)
    await expect(page.get_by_test_id("filter-closed")).to_have_text("Encerradas")
    await page.get_by_test_id("lang-toggle").click()
    await expect(page.get_by_test_id("filter-closed")).to_have_text("Closed")
    await expect(page.get_by_test_id("nav-inbox")).to_have_text("Inbox")
    await page.reload()
    await expect(page.get_by_test_id("filter-all")).to_have_text("All")
    await page.get_by_test_id("lang-toggle").click()
    await expect(page.get_by_test_id("filter-all")).to_have_text("Todas")
