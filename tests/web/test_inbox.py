"""The atendimento page in a real Chromium: login, live messages, ticks, filters, unread, roles."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Locator, Page, expect

from atende.services import accounts
from atende.types import Role
from tests.harness import Tenant
from tests.web.conftest import PASSWORD, agent_email, login, screenshot

LIVE_MS = 1_000  # "appears within a second without reload"


def item(page: Page, name: str) -> Locator:
    return page.get_by_test_id("conversation-item").filter(has_text=name)


async def test_login_rejects_a_wrong_password_then_logs_in(page: Page, tenant: Tenant) -> None:
    base = tenant.server.base_url
    await page.goto(base)
    await expect(page.get_by_test_id("page-login")).to_be_visible()
    await screenshot(page, "login")
    await page.get_by_test_id("login-email").fill(tenant.admin_email)
    await page.get_by_test_id("login-password").fill("wrong-password")
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("login-error")).to_have_text("E-mail ou senha inválidos.")
    await login(page, base, tenant.admin_email)
    await expect(page.get_by_test_id("current-user")).to_be_visible()
    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("page-login")).to_be_visible()


async def test_customer_message_appears_live_in_list_and_open_chat(
    page: Page, tenant: Tenant
) -> None:
    await login(page, tenant.server.base_url, tenant.admin_email)
    marker = uuid.uuid4().hex
    await page.evaluate(f"window.__noReload = '{marker}'")
    await tenant.customer_says("Olá! Quero marcar uma consulta.", push_name="Maria Souza")
    row = item(page, "Maria Souza")
    await expect(row).to_be_visible(timeout=LIVE_MS)
    await expect(row.get_by_test_id("conversation-last")).to_have_text(
        "Olá! Quero marcar uma consulta."
    )
    await row.click()
    chat = page.get_by_test_id("message-list")
    await expect(chat.get_by_test_id("message")).to_have_count(1)
    await expect(page.get_by_test_id("chat-title")).to_have_text("Maria Souza")
    await expect(page.get_by_test_id("panel-phone")).to_have_text("+5511987654321")

    hostile = '<img src=x onerror="window.__pwned=1"><b>negrito</b>'
    await tenant.customer_says(hostile, push_name="Maria Souza")
    last = chat.get_by_test_id("message").last
    await expect(last.get_by_test_id("message-text")).to_have_text(hostile, timeout=LIVE_MS)
    await expect(last).to_have_attribute("data-direction", "inbound")
    assert await page.evaluate("window.__pwned === undefined")
    assert await chat.locator("img, b").count() == 0
    assert await page.evaluate("window.__noReload") == marker
    await screenshot(page, "atendimento")


async def test_reply_ticks_move_to_read(page: Page, tenant: Tenant) -> None:
    await tenant.customer_says("Vocês abrem sábado?", push_name="Carlos")
    await login(page, tenant.server.base_url, tenant.admin_email)
    await item(page, "Carlos").click()
    composer = page.get_by_test_id("composer-input")
    await composer.fill("Abrimos sim, das 8h às 12h.")
    await composer.press("Enter")
    outbound = page.locator("[data-testid=message][data-direction=outbound]")
    await expect(outbound).to_have_count(1)
    await expect(outbound.get_by_test_id("message-text")).to_have_text(
        "Abrimos sim, das 8h às 12h."
    )
    tick = outbound.get_by_test_id("tick")
    await expect(tick).to_have_attribute("data-status", "read")
    await expect(tick).to_have_attribute("title", "Lida")
    await expect(composer).to_have_value("")
    await expect(item(page, "Carlos").get_by_test_id("conversation-last")).to_have_text(
        "Abrimos sim, das 8h às 12h."
    )


async def test_filters_and_search_narrow_the_list(page: Page, tenant: Tenant) -> None:
    await tenant.customer_says("Preciso de um orçamento", phone="5511911110001", push_name="Ana")
    await tenant.customer_says(
        "Obrigado pelo atendimento", phone="5521922220002", push_name="Bruno"
    )
    async with tenant.http() as client:
        convs = (await client.get("/api/v1/conversations", headers=tenant.auth())).json()
        bruno = next(c for c in convs if c["contact"]["name"] == "Bruno")
        closed = await client.post(
            f"/api/v1/conversations/{bruno['id']}/status",
            json={"status": "closed"},
            headers=tenant.auth(),
        )
        assert closed.status_code == 200, closed.text
    await login(page, tenant.server.base_url, tenant.admin_email)
    items = page.get_by_test_id("conversation-item")
    await expect(items).to_have_count(2)

    await page.get_by_test_id("filter-closed").click()
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("Bruno")
    await page.get_by_test_id("filter-active").click()
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("Ana")
    await page.get_by_test_id("filter-waiting").click()
    await expect(page.get_by_test_id("list-empty")).to_be_visible()
    await page.get_by_test_id("filter-all").click()
    await expect(items).to_have_count(2)

    search = page.get_by_test_id("search-input")
    for term, expected in (("bruno", "Bruno"), ("2192222", "Bruno"), ("orçamento", "Ana")):
        await search.fill(term)
        await expect(items).to_have_count(1)
        await expect(items.first).to_contain_text(expected)
    await search.fill("ninguém-com-esse-nome")
    await expect(page.get_by_test_id("list-empty")).to_be_visible()
    await search.fill("")
    await expect(items).to_have_count(2)


async def test_unread_badge_rises_and_clears_on_open(page: Page, tenant: Tenant) -> None:
    await tenant.customer_says("Primeira", phone="5511933330003", push_name="Dora")
    await login(page, tenant.server.base_url, tenant.admin_email)
    row = item(page, "Dora")
    await expect(row.get_by_test_id("unread-badge")).to_have_text("1")
    await tenant.customer_says("Segunda", phone="5511933330003", push_name="Dora")
    await tenant.customer_says("Terceira", phone="5511933330003", push_name="Dora")
    await expect(row.get_by_test_id("unread-badge")).to_have_text("3", timeout=LIVE_MS)
    await expect(page).to_have_title("(3) Atende")
    await row.click()
    await expect(row.get_by_test_id("unread-badge")).to_have_count(0)
    await expect(page).to_have_title("Atende")
    # A message in the conversation on screen is read at once: no badge comes back.
    async with page.expect_response(lambda r: r.url.endswith("/read")) as read:
        await tenant.customer_says("Quarta", phone="5511933330003", push_name="Dora")
    assert (await read.value).ok
    await expect(page.get_by_test_id("message")).to_have_count(4)
    await expect(row.get_by_test_id("unread-badge")).to_have_count(0)
    async with tenant.http() as client:
        convs = (await client.get("/api/v1/conversations", headers=tenant.auth())).json()
    assert next(c for c in convs if c["contact"]["name"] == "Dora")["unread_count"] == 0


async def test_agent_cannot_see_another_agents_conversation(page: Page, tenant: Tenant) -> None:
    other = await accounts.create_user(
        tenant.server.ctx,
        tenant_id=tenant.id,
        email=f"other-{uuid.uuid4().hex[:8]}@t.test",
        password=PASSWORD,
        role=Role.AGENT,
    )
    await tenant.customer_says("Mensagem da Eva", phone="5511944440004", push_name="Eva")
    await tenant.customer_says("Mensagem do Fábio", phone="5511955550005", push_name="Fábio")
    eva = await tenant.conversation_where(lambda c: c["contact"]["name"] == "Eva")
    await tenant.assign(eva["id"], other.id)
    await login(page, tenant.server.base_url, agent_email(tenant))
    await expect(item(page, "Fábio")).to_be_visible()
    await expect(item(page, "Eva")).to_have_count(0)
    # New messages in it do not leak into this agent's inbox either.
    await tenant.customer_says("Eva de novo", phone="5511944440004", push_name="Eva")
    await tenant.customer_says("Fábio de novo", phone="5511955550005", push_name="Fábio")
    await expect(item(page, "Fábio").get_by_test_id("conversation-last")).to_have_text(
        "Fábio de novo"
    )
    await expect(item(page, "Eva")).to_have_count(0)
    async with httpx.AsyncClient(base_url=tenant.server.base_url) as client:
        hidden = await client.get(
            f"/api/v1/conversations/{eva['id']}/messages", headers=tenant.auth(tenant.agent_token)
        )
    assert hidden.status_code in (403, 404)
