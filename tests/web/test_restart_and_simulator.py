"""Reconnection across a server restart, and the customer simulator, in a real Chromium."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Page, expect

from tests.harness import Tenant, free_port, make_tenant
from tests.web.conftest import login, screenshot, serve_on, sqlite_url, web_settings

RECONNECT_MS = 20_000  # the page backs off up to 10 s between attempts


async def test_messages_sent_while_the_server_was_down_appear_after_reconnect(
    page: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = await sqlite_url(tmp_path_factory)
    port = free_port()
    settings = web_settings(url, port)
    async with serve_on(settings, port) as first:
        tenant = await make_tenant(first)
        await tenant.customer_says("Antes da queda", phone="5511966660006", push_name="Gabi")
        await login(page, first.base_url, tenant.admin_email)
        await page.get_by_test_id("conversation-item").filter(has_text="Gabi").click()
        await expect(page.get_by_test_id("message")).to_have_count(1)
        marker = uuid.uuid4().hex
        await page.evaluate(f"window.__noReload = '{marker}'")

    indicator = page.get_by_test_id("connection-indicator")
    await expect(indicator).to_have_attribute("data-state", "offline")
    await expect(page.get_by_test_id("offline-banner")).to_be_visible()
    await screenshot(page, "atendimento-offline")

    # Meanwhile, customers keep writing (taken in by another Atende on the same database).
    side_port = free_port()
    async with serve_on(web_settings(url, side_port), side_port) as side:
        tenant.server = side
        for text in ("Durante a queda 1", "Durante a queda 2"):
            response = await tenant.customer_says(text, phone="5511966660006", push_name="Gabi")
            assert response.status_code == 200, response.text
        await tenant.customer_says("Sou novo aqui", phone="5511977770007", push_name="Hugo")

    async with serve_on(settings, port):
        await expect(indicator).to_have_attribute("data-state", "online", timeout=RECONNECT_MS)
        await expect(page.get_by_test_id("offline-banner")).to_be_hidden()
        texts = page.get_by_test_id("message-text")
        await expect(texts).to_have_text(
            ["Antes da queda", "Durante a queda 1", "Durante a queda 2"]
        )
        hugo = page.get_by_test_id("conversation-item").filter(has_text="Hugo")
        await expect(hugo.get_by_test_id("unread-badge")).to_have_text("1")
        assert await page.evaluate("window.__noReload") == marker


async def test_customer_simulator_plays_both_sides(page: Page, tenant: Tenant) -> None:
    await login(page, tenant.server.base_url, tenant.admin_email)
    await page.get_by_test_id("nav-simulator").click()
    sim = page.get_by_test_id("simulator")
    await expect(sim).to_be_visible()
    await expect(sim.get_by_test_id("sim-session").locator("option")).to_have_text(
        [tenant.session_name]
    )
    await sim.get_by_test_id("sim-phone").fill("5511988880008")
    await sim.get_by_test_id("sim-name").fill("Iara")
    await sim.get_by_test_id("sim-input").fill("Oi, aqui é a Iara!")
    await sim.get_by_test_id("sim-input").press("Enter")
    bubbles = sim.get_by_test_id("sim-message")
    await expect(bubbles).to_have_count(1)
    await expect(bubbles.first).to_have_attribute("data-direction", "inbound")

    async with tenant.http() as client:
        convs = (
            await client.get("/api/v1/conversations?search=Iara", headers=tenant.auth())
        ).json()
        assert [c["contact"]["name"] for c in convs] == ["Iara"]
        reply = await client.post(
            f"/api/v1/conversations/{convs[0]['id']}/messages",
            json={"content": "Olá Iara, como posso ajudar?", "message_type": "text"},
            headers=tenant.auth(),
        )
        assert reply.status_code == 200, reply.text
    await expect(bubbles).to_have_count(2)
    await expect(bubbles.last).to_have_attribute("data-direction", "outbound")
    await expect(bubbles.last).to_contain_text("Olá Iara, como posso ajudar?")
    await screenshot(page, "simulator")

    # The same phone, as a toggleable panel on the atendimento page.
    await page.get_by_test_id("nav-inbox").click()
    row = page.get_by_test_id("conversation-item").filter(has_text="Iara")
    await row.click()
    await page.get_by_test_id("simulator-toggle").click()
    floating = page.get_by_test_id("simulator")
    await expect(floating.get_by_test_id("sim-message")).to_have_count(2)
    await floating.get_by_test_id("sim-input").fill("Queria saber o preço")
    await floating.get_by_test_id("sim-send").click()
    await expect(
        page.get_by_test_id("message-list").get_by_test_id("message-text").last
    ).to_have_text("Queria saber o preço")
    await screenshot(page, "atendimento-simulator")
