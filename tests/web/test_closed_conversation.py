"""Issue 10 item 7 in a real Chromium: writing into a closed conversation is never hidden.

The composer of a closed conversation says that sending reopens it; after the send the inbox
shows the conversation the message went into (the same one reopened, or the contact's current
one, said so), and a refusal (the current one is a colleague's) is shown, the text kept.
"""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.harness import Tenant
from tests.security.colleagues import another_agent, conversations_of, set_status
from tests.web.conftest import agent_email, login, screenshot

DESKTOP = {"width": 1440, "height": 900}
PHONE_SIZE = {"width": 390, "height": 844}


async def closed_conversation(tenant: Tenant, phone: str, name: str) -> str:
    await tenant.customer_says("Obrigada, era só isso", phone=phone, push_name=name)
    [conv] = await conversations_of(tenant, phone)
    await set_status(tenant, conv["id"], "closed")
    return str(conv["id"])


async def open_conversation(page: Page, name: str) -> None:
    await page.get_by_test_id("conversation-item").filter(has_text=name).click()
    await expect(page.get_by_test_id("chat-title")).to_have_text(name)


async def send(page: Page, text: str) -> None:
    await page.get_by_test_id("composer-input").fill(text)
    await page.get_by_test_id("composer-input").press("Enter")


async def test_sending_reopens_a_closed_conversation_in_sight(page: Page, tenant: Tenant) -> None:
    phone = "5511900007001"
    conv = await closed_conversation(tenant, phone, "Rita Closed")
    await login(page, tenant.server.base_url, agent_email(tenant))
    await open_conversation(page, "Rita Closed")
    note = page.get_by_test_id("closed-note")
    await expect(note).to_have_text("Esta conversa está encerrada. Enviar uma mensagem a reabre.")
    await expect(page.get_by_test_id("composer-input")).to_have_attribute(
        "placeholder", "Digite para reabrir a conversa"
    )
    await screenshot(page, "closed-conversation")
    await page.set_viewport_size(PHONE_SIZE)
    await expect(note).to_be_visible()
    await screenshot(page, "closed-conversation-mobile")
    await page.set_viewport_size(DESKTOP)

    await send(page, "Vamos retomar o seu pedido")
    await expect(page.get_by_test_id("message-text").last).to_have_text(
        "Vamos retomar o seu pedido"
    )
    await expect(note).to_be_hidden()
    await expect(page.get_by_test_id("chat-subtitle")).to_contain_text("Atribuída")
    items = page.get_by_test_id("conversation-item").filter(has_text="Rita Closed")
    await expect(items).to_have_count(1)  # the same row, reopened: no hidden second one
    await expect(items).to_have_attribute("data-conversation-id", conv)
    await expect(items).to_have_attribute("data-status", "assigned")
    await screenshot(page, "closed-conversation-reopened")
    await page.set_viewport_size(PHONE_SIZE)  # a phone shows the chat alone, with a way back
    await expect(page.get_by_test_id("conversation-list")).to_be_hidden()
    await screenshot(page, "closed-conversation-reopened-mobile")
    await page.get_by_test_id("chat-back").click()
    await expect(items).to_be_visible()
    await expect(page.get_by_test_id("chat")).to_be_hidden()
    [reopened] = await conversations_of(tenant, phone)
    assert (reopened["id"], reopened["assignee_id"]) == (conv, str(tenant.agent_id))


async def test_the_inbox_follows_the_message_into_the_current_conversation(
    page: Page, tenant: Tenant
) -> None:
    phone = "5511900007002"
    closed = await closed_conversation(tenant, phone, "Caio Closed")
    await tenant.customer_says("Oi, voltei", phone=phone, push_name="Caio Closed")
    [current] = [c for c in await conversations_of(tenant, phone) if c["status"] != "closed"]
    await login(page, tenant.server.base_url, agent_email(tenant))
    await page.get_by_test_id("filter-closed").click()
    await expect(page.get_by_test_id("conversation-item")).to_have_count(1)
    await open_conversation(page, "Caio Closed")
    await send(page, "Respondendo aqui")

    selected = page.locator("[data-testid=conversation-item].selected")
    await expect(selected).to_have_attribute("data-conversation-id", current["id"])
    await expect(page.get_by_test_id("chat-notice")).to_have_text(
        "A mensagem foi para a conversa atual deste contato."
    )
    await expect(page.get_by_test_id("message-text").last).to_have_text("Respondendo aqui")
    await expect(page.get_by_test_id("closed-note")).to_be_hidden()
    await expect(page.get_by_test_id("filter-all")).to_have_class("chip active")
    await screenshot(page, "closed-conversation-moved")
    assert closed != current["id"]


async def test_a_colleagues_current_conversation_refuses_visibly(
    page: Page, tenant: Tenant
) -> None:
    phone = "5511900007003"
    colleague = await another_agent(tenant)
    await closed_conversation(tenant, phone, "Duda Closed")
    await tenant.customer_says("Alguém?", phone=phone, push_name="Duda Closed")
    [current] = [c for c in await conversations_of(tenant, phone) if c["status"] != "closed"]
    await tenant.assign(current["id"], colleague.id)
    await login(page, tenant.server.base_url, agent_email(tenant))
    await page.get_by_test_id("lang-toggle").click()
    await open_conversation(page, "Duda Closed")
    await expect(page.get_by_test_id("closed-note")).to_have_text(
        "This conversation is closed. Sending a message reopens it."
    )
    await send(page, "Posso ajudar?")
    await expect(page.get_by_test_id("send-error")).to_have_text(
        "This contact's current conversation is with another agent."
    )
    await expect(page.get_by_test_id("composer-input")).to_have_value("Posso ajudar?")
    await expect(page.get_by_test_id("conversation-item")).to_have_count(1)
    await screenshot(page, "closed-conversation-refused")
    assert current["id"] not in await page.content()
