"""Issue 10 item 7: a closed conversation is no way into a colleague's conversation.

Posting to a closed conversation X used to land the message in the contact's current open
conversation Y — whoever it was assigned to — and answer with Y's id. Now the visibility check
runs on the conversation actually written to, on every send path: Y is written to only if the
caller may see it (else 403, with nothing about Y in the answer); with no Y, X itself is reopened,
visibly (`conversation_updated`, change `reopened`), and no second row appears.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import Tenant
from tests.security.colleagues import (
    another_agent,
    conversations_of,
    messages_in,
    set_status,
)

CONVERSATION_ROUTES = ("v1", "seed003")


async def post_to_conversation(
    tenant: Tenant, token: str, route: str, conversation_id: str, text: str
) -> httpx.Response:
    """A send into a conversation by id, through seed 001's or seed 003's route."""
    async with tenant.http() as http:
        if route == "v1":
            return await http.post(
                f"/api/v1/conversations/{conversation_id}/messages",
                json={"content": text},
                headers=tenant.auth(token),
            )
        return await http.post(
            f"/api/conversations/{conversation_id}/send-message",
            json={"message": text},
            headers=tenant.auth(token),
        )


def sent_conversation(route: str, answer: httpx.Response) -> str:
    body: dict[str, Any] = answer.json()
    message = body if route == "v1" else body["message"]
    return str(message["conversation_id"])


async def closed_and_current(tenant: Tenant, phone: str) -> tuple[str, str]:
    """X: the contact's first conversation, closed; Y: the one its next message opened."""
    await tenant.customer_says("primeira conversa", phone=phone)
    [first] = await conversations_of(tenant, phone)
    await set_status(tenant, first["id"], "closed")
    await tenant.customer_says("segunda conversa", phone=phone)
    current = [c for c in await conversations_of(tenant, phone) if c["status"] != "closed"]
    assert len(current) == 1 and current[0]["id"] != first["id"]
    return str(first["id"]), str(current[0]["id"])


def phone_of(n: int) -> str:
    return f"55119{n:08d}"


async def test_a_closed_conversation_is_no_way_into_a_colleagues(tenant: Tenant) -> None:
    phone = phone_of(70000001)
    colleague = await another_agent(tenant)
    closed, current = await closed_and_current(tenant, phone)
    await tenant.assign(current, colleague.id)
    before_closed = len(await messages_in(tenant, closed))
    before_current = len(await messages_in(tenant, current))

    for route in CONVERSATION_ROUTES:
        answer = await post_to_conversation(tenant, tenant.agent_token, route, closed, "oi")
        assert answer.status_code == 403, (route, answer.text)
        assert answer.json()["error_code"] == "FORBIDDEN"
        assert current not in answer.text, f"{route} revealed the colleague's conversation"

    async with tenant.http() as http:  # seed 000: by phone, into the current conversation
        answer = await http.post(
            f"/api/tenants/{tenant.id}/chat/send",
            json={"phone_number": phone, "text": "oi"},
            headers=tenant.auth(tenant.agent_token),
        )
    assert answer.status_code == 403 and current not in answer.text, answer.text
    async with tenant.chat_socket(tenant.agent_token) as socket:  # /ws/chat by phone
        await socket.send({"type": "send_message", "phone_number": phone, "text": "oi"})
        error = await socket.expect("error")
    assert error["error_code"] == "FORBIDDEN" and current not in str(error), error

    assert len(await messages_in(tenant, closed)) == before_closed
    assert len(await messages_in(tenant, current)) == before_current
    assert len(await conversations_of(tenant, phone)) == 2  # and no third row anywhere


@pytest.mark.parametrize("route", CONVERSATION_ROUTES)
async def test_a_send_into_a_closed_conversation_goes_into_the_visible_current_one(
    tenant: Tenant, route: str
) -> None:
    phone = phone_of(70000010 + CONVERSATION_ROUTES.index(route))
    closed, current = await closed_and_current(tenant, phone)  # current is unassigned
    answer = await post_to_conversation(tenant, tenant.agent_token, route, closed, "voltei")
    assert answer.status_code == 200, answer.text
    assert sent_conversation(route, answer) == current
    texts = [m["content"]["text"] for m in await messages_in(tenant, current)]
    assert texts[-1] == "voltei"
    assert [c["status"] for c in await conversations_of(tenant, phone)].count("closed") == 1


@pytest.mark.parametrize("route", CONVERSATION_ROUTES)
async def test_a_closed_conversation_with_nothing_newer_is_reopened_visibly(
    tenant: Tenant, route: str
) -> None:
    phone = phone_of(70000020 + CONVERSATION_ROUTES.index(route))
    await tenant.customer_says("preciso de ajuda", phone=phone)
    [conv] = await conversations_of(tenant, phone)
    await set_status(tenant, conv["id"], "closed")

    async with tenant.chat_socket(tenant.agent_token) as socket:
        answer = await post_to_conversation(tenant, tenant.agent_token, route, conv["id"], "oi!")
        assert answer.status_code == 200, answer.text
        assert sent_conversation(route, answer) == conv["id"]
        update = await socket.expect(
            "conversation_updated", lambda f: f["conversation"]["id"] == conv["id"]
        )
    assert update["change"] == "reopened"
    [reopened] = await conversations_of(tenant, phone)  # the same row: no hidden second one
    assert reopened["id"] == conv["id"]
    assert reopened["status"] == "assigned"
    assert reopened["assignee_id"] == str(tenant.agent_id)  # nobody had it: the sender has it
    assert (await messages_in(tenant, conv["id"]))[-1]["content"]["text"] == "oi!"


async def test_reopening_keeps_the_conversations_assignee(tenant: Tenant) -> None:
    phone = phone_of(70000030)
    await tenant.customer_says("olá", phone=phone)
    [conv] = await conversations_of(tenant, phone)
    await tenant.assign(conv["id"], tenant.agent_id)
    await set_status(tenant, conv["id"], "closed")
    answer = await post_to_conversation(tenant, tenant.admin_token, "v1", conv["id"], "retomando")
    assert answer.status_code == 200, answer.text
    [reopened] = await conversations_of(tenant, phone)
    assert (reopened["id"], reopened["status"]) == (conv["id"], "assigned")
    assert reopened["assignee_id"] == str(tenant.agent_id)  # not the admin who wrote


async def test_an_agent_cannot_reopen_a_colleagues_closed_conversation(tenant: Tenant) -> None:
    phone = phone_of(70000040)
    colleague = await another_agent(tenant)
    await tenant.customer_says("olá", phone=phone)
    [conv] = await conversations_of(tenant, phone)
    await tenant.assign(conv["id"], colleague.id)
    await set_status(tenant, conv["id"], "closed")
    for route in CONVERSATION_ROUTES:
        answer = await post_to_conversation(tenant, tenant.agent_token, route, conv["id"], "x")
        assert answer.status_code == 403, answer.text
    [still] = await conversations_of(tenant, phone)
    assert (still["status"], still["assignee_id"]) == ("closed", str(colleague.id))


async def test_the_reopen_button_reopens_unless_the_contact_has_a_newer_one(
    tenant: Tenant,
) -> None:
    """The panel's "Reabrir" (status → active) follows the same rule as a send: the closed row
    itself comes back when the contact has no open conversation; else 409, nothing changed."""
    phone = phone_of(70000050)
    await tenant.customer_says("olá", phone=phone)
    [conv] = await conversations_of(tenant, phone)
    await set_status(tenant, conv["id"], "closed")
    async with tenant.chat_socket(tenant.agent_token) as socket:
        await set_status(tenant, conv["id"], "active")
        update = await socket.expect(
            "conversation_updated", lambda f: f["conversation"]["id"] == conv["id"]
        )
    assert update["change"] == "reopened"
    [reopened] = await conversations_of(tenant, phone)
    assert (reopened["id"], reopened["status"]) == (conv["id"], "active")

    first, current = await closed_and_current(tenant, phone_of(70000051))
    async with tenant.http() as http:
        answer = await http.post(
            f"/api/v1/conversations/{first}/status",
            json={"status": "active"},
            headers=tenant.auth(),
        )
    assert (answer.status_code, answer.json()["error_code"]) == (409, "CONFLICT"), answer.text
    assert current not in answer.text
    states = {c["id"]: c["status"] for c in await conversations_of(tenant, phone_of(70000051))}
    assert states[first] == "closed" and states[current] != "closed"
