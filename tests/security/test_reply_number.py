"""Issue 10 item 17: replies leave from the WhatsApp number the customer wrote to.

A tenant with two numbers used to answer every conversation through its first connected session.
Now a conversation belongs to its session: replies (REST, sockets, seed 000/003 routes) leave
through it, its acks are its own, and while it is disconnected a reply is refused with 503 even
if the other number is up. A first message to a phone takes the contact's last number, else the
tenant's only one, else the caller must say which (`session_id`, SESSION_REQUIRED otherwise).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from atende.db.models import Contact, Message
from atende.services import sessions as sessions_svc
from atende.types import ProviderName, SessionState
from tests.fakes.waha import FakeWaha
from tests.gateways.cases import WahaCase, gateway_tenant
from tests.harness import Server, Tenant, WsClient
from tests.security.colleagues import conversations_of, set_status

SEND_ROUTES = ("v1", "seed003", "seed000", "ws_chat")


@dataclass(frozen=True)
class Number:
    id: uuid.UUID
    name: str


async def second_number(tenant: Tenant) -> Number:
    """A second sandbox session (connected, like every sandbox session) of `tenant`."""
    row = await sessions_svc.create_session(
        tenant.server.ctx,
        tenant_id=tenant.id,
        provider=ProviderName.SANDBOX,
        name=f"numero-2-{uuid.uuid4().hex[:8]}",
        webhook_secret=uuid.uuid4().hex,
    )
    return Number(row.id, row.name)


async def customer_writes_to(tenant: Tenant, number: uuid.UUID, phone: str, text: str) -> str:
    """The customer writes to one of the tenant's sandbox numbers; the conversation's id."""
    async with tenant.http() as http:
        answer = await http.post(
            "/api/v1/sandbox/messages",
            json={"session_id": str(number), "from": phone, "text": text},
            headers=tenant.auth(),
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["conversation_id"])


async def reply(
    tenant: Tenant,
    route: str,
    *,
    conversation_id: str,
    phone: str,
    text: str,
    socket: WsClient,
    session_id: uuid.UUID | None = None,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of an agent's reply through `route`; a socket error is its code's
    HTTP status."""
    extra = {} if session_id is None else {"session_id": str(session_id)}
    if route == "ws_chat":
        await socket.send({"type": "send_message", "phone_number": phone, "text": text, **extra})
        return await _answer(socket)
    agent = tenant.auth(tenant.agent_token)
    async with tenant.http() as http:
        answer: httpx.Response
        if route == "v1":
            answer = await http.post(
                f"/api/v1/conversations/{conversation_id}/messages",
                json={"content": text, **extra},
                headers=agent,
            )
        elif route == "seed003":
            answer = await http.post(
                f"/api/conversations/{conversation_id}/send-message",
                json={"message": text, **extra},
                headers=agent,
            )
        else:
            answer = await http.post(
                f"/api/tenants/{tenant.id}/chat/send",
                json={"phone_number": phone, "text": text, **extra},
                headers=agent,
            )
    return answer.status_code, answer.json()


STATUS_OF = {
    "WHATSAPP_DISCONNECTED": 503,
    "SESSION_REQUIRED": 400,
    "SESSION_MISMATCH": 400,
    "NOT_FOUND": 404,
    "FORBIDDEN": 403,
    "INVALID_INPUT": 400,
}


async def _answer(socket: WsClient) -> tuple[int, dict[str, Any]]:
    while True:
        frame = await socket.next()
        if frame.get("type") == "message_sent":
            return 200, frame
        if frame.get("type") == "error":
            return STATUS_OF[frame["error_code"]], frame


def message_id_of(route: str, body: dict[str, Any]) -> str:
    if route == "v1":
        return str(body["id"])
    if route == "seed003":
        return str(body["message"]["id"])
    return str(body["message_id"])


async def session_of_message(server: Server, message_id: str) -> uuid.UUID | None:
    async with server.ctx.sessionmaker() as session:
        msg = await session.get(Message, uuid.UUID(message_id))
    assert msg is not None
    return msg.session_id


async def stored_count(tenant: Tenant) -> tuple[int, int]:
    """(messages, contacts) of the tenant."""
    async with tenant.server.ctx.sessionmaker() as session:
        messages = await session.scalar(
            select(func.count(Message.id)).where(Message.tenant_id == tenant.id)
        )
        contacts = await session.scalar(
            select(func.count(Contact.id)).where(Contact.tenant_id == tenant.id)
        )
    return int(messages or 0), int(contacts or 0)


def phone_of(n: int) -> str:
    return f"55119{n:08d}"


# -- sandbox numbers ----------------------------------------------------------------------------
@pytest.mark.parametrize("route", SEND_ROUTES)
async def test_a_reply_leaves_through_the_number_the_customer_wrote_to(
    tenant: Tenant, route: str
) -> None:
    number2 = await second_number(tenant)
    phone = phone_of(71000000 + SEND_ROUTES.index(route))
    conv = await customer_writes_to(tenant, number2.id, phone, "escrevi para o número 2")
    async with tenant.chat_socket(tenant.agent_token) as socket:
        status, body = await reply(
            tenant, route, conversation_id=conv, phone=phone, text="resposta", socket=socket
        )
        assert status == 200, body
        message_id = message_id_of(route, body)
        # ✓✓: the sandbox phone of number 2 acknowledges it, and the ack finds the message
        # only among number 2's messages.
        await socket.expect(
            "message_status", lambda f: f["message_id"] == message_id and f["status"] == "read"
        )
    assert await session_of_message(tenant.server, message_id) == number2.id


@pytest.mark.parametrize("route", SEND_ROUTES)
async def test_a_disconnected_number_refuses_even_when_another_is_connected(
    tenant: Tenant, route: str
) -> None:
    number2 = await second_number(tenant)
    phone = phone_of(71000010 + SEND_ROUTES.index(route))
    conv = await customer_writes_to(tenant, number2.id, phone, "oi")
    await sessions_svc.set_state(tenant.server.ctx, number2.id, state=SessionState.DISCONNECTED)
    before = await stored_count(tenant)
    async with tenant.chat_socket(tenant.agent_token) as socket:
        status, body = await reply(
            tenant, route, conversation_id=conv, phone=phone, text="alguém?", socket=socket
        )
    assert (status, body["error_code"]) == (503, "WHATSAPP_DISCONNECTED"), body
    assert await stored_count(tenant) == before


@pytest.mark.parametrize("route", ("seed000", "ws_chat"))
async def test_a_first_message_needs_a_number_when_there_are_several(
    tenant: Tenant, other_tenant: Tenant, route: str
) -> None:
    number2 = await second_number(tenant)
    phone = phone_of(71000020 + SEND_ROUTES.index(route))
    before = await stored_count(tenant)
    async with tenant.chat_socket(tenant.agent_token) as socket:
        status, body = await reply(
            tenant, route, conversation_id="", phone=phone, text="olá", socket=socket
        )
        assert (status, body["error_code"]) == (400, "SESSION_REQUIRED"), body
        choices = {c["id"] for c in body["details"]["choices"]}
        assert choices == {str(tenant.session_id), str(number2.id)}
        assert await stored_count(tenant) == before  # not even the contact

        status, body = await reply(
            tenant,
            route,
            conversation_id="",
            phone=phone,
            text="olá",
            socket=socket,
            session_id=other_tenant.session_id,
        )
        assert (status, body["error_code"]) == (404, "NOT_FOUND"), body
        assert await stored_count(tenant) == before

        status, body = await reply(
            tenant,
            route,
            conversation_id="",
            phone=phone,
            text="olá",
            socket=socket,
            session_id=number2.id,
        )
        assert status == 200, body
        first = message_id_of(route, body)
        # The conversation now has its number: the next message needs no session_id.
        status, body = await reply(
            tenant, route, conversation_id="", phone=phone, text="de novo", socket=socket
        )
        assert status == 200, body
    assert await session_of_message(tenant.server, first) == number2.id
    assert await session_of_message(tenant.server, message_id_of(route, body)) == number2.id


async def test_a_new_conversation_reuses_the_contacts_last_number(tenant: Tenant) -> None:
    number2 = await second_number(tenant)
    phone = phone_of(71000030)
    conv = await customer_writes_to(tenant, number2.id, phone, "oi")
    await set_status(tenant, conv, "closed")
    async with tenant.chat_socket(tenant.agent_token) as socket:
        status, body = await reply(
            tenant, "seed000", conversation_id="", phone=phone, text="voltando", socket=socket
        )
    assert status == 200, body
    assert await session_of_message(tenant.server, body["message_id"]) == number2.id
    assert len(await conversations_of(tenant, phone)) == 2


async def test_the_answer_follows_the_number_the_customer_last_wrote_to(tenant: Tenant) -> None:
    number2 = await second_number(tenant)
    phone = phone_of(71000040)
    first = await customer_writes_to(tenant, tenant.session_id, phone, "pelo número 1")
    second = await customer_writes_to(tenant, number2.id, phone, "agora pelo número 2")
    assert first == second  # one open conversation per contact
    async with tenant.chat_socket(tenant.agent_token) as socket:
        status, body = await reply(
            tenant, "v1", conversation_id=first, phone=phone, text="resposta", socket=socket
        )
    assert status == 200, body
    assert await session_of_message(tenant.server, body["id"]) == number2.id


async def test_naming_another_number_than_the_conversations_is_refused(tenant: Tenant) -> None:
    number2 = await second_number(tenant)
    phone = phone_of(71000050)
    conv = await customer_writes_to(tenant, number2.id, phone, "oi")
    before = await stored_count(tenant)
    async with tenant.chat_socket(tenant.agent_token) as socket:
        for route in SEND_ROUTES:
            status, body = await reply(
                tenant,
                route,
                conversation_id=conv,
                phone=phone,
                text="x",
                socket=socket,
                session_id=tenant.session_id,
            )
            assert (status, body["error_code"]) == (400, "SESSION_MISMATCH"), (route, body)
    assert await stored_count(tenant) == before


# -- two real (fake) WAHA gateways ----------------------------------------------------------------
@asynccontextmanager
async def two_waha_numbers(server: Server) -> AsyncIterator[tuple[WahaCase, WahaCase]]:
    """One tenant with two WAHA sessions, each on its own running fake WAHA server."""
    fake1, fake2 = FakeWaha(), FakeWaha()
    async with fake1.running(), fake2.running():
        first = WahaCase(server, fake1, f"whsec-{uuid.uuid4().hex[:10]}")
        WahaCase.assign(fake1, first.secret)
        first.tenant = await gateway_tenant(server, first)
        second = WahaCase(server, fake2, f"whsec-{uuid.uuid4().hex[:10]}")
        WahaCase.assign(fake2, second.secret)
        row = await sessions_svc.create_session(
            server.ctx,
            tenant_id=first.tenant.id,
            provider=ProviderName.WAHA,
            name=second.session_name,
            base_url=fake2.base_url,
            api_key=fake2.api_key,
            webhook_secret=second.secret,
        )
        await sessions_svc.set_state(server.ctx, row.id, state=SessionState.CONNECTED)
        second.tenant = Tenant(
            **{**first.tenant.__dict__, "session_name": row.name, "session_id": row.id}
        )
        yield first, second


async def test_two_gateways_each_answers_its_own_customers(server: Server) -> None:
    phone = phone_of(71000060)
    async with two_waha_numbers(server) as (number1, number2):
        tenant = number1.tenant
        stored = await number2.deliver(number2.inbound_text("oi, número 2", phone=phone))
        assert stored.status_code == 200 and stored.json()["stored"] == 1, stored.text
        [conv] = await conversations_of(tenant, phone)
        async with tenant.chat_socket(tenant.agent_token) as socket:
            status, body = await reply(
                tenant, "v1", conversation_id=conv["id"], phone=phone, text="ok", socket=socket
            )
            assert status == 200, body
            await socket.expect(
                "message_status", lambda f: f["message_id"] == body["id"] and f["status"] == "sent"
            )
            assert number1.sends() == []  # nothing left through number 1's gateway
            [sent] = number2.sends()
            assert sent.json["session"] == number2.session_name
            assert sent.json["chatId"].startswith(phone)

            wamid = (await number2.message(body["id"])).whatsapp_message_id
            assert wamid is not None
            # Number 1's gateway cannot ack number 2's message; number 2's can.
            foreign = await number1.deliver(number1.ack(wamid, "read"))
            assert foreign.status_code == 200 and foreign.json()["statuses"] == 0, foreign.text
            own = await number2.deliver(number2.ack(wamid, "read"))
            assert own.status_code == 200 and own.json()["statuses"] == 1, own.text
            await socket.expect(
                "message_status", lambda f: f["message_id"] == body["id"] and f["status"] == "read"
            )

            down = await number2.deliver(number2.connection("disconnected"))
            assert down.status_code == 200, down.text
            await socket.expect("connection_status", lambda f: not f["whatsapp_connected"])
            status, refused = await reply(
                tenant, "v1", conversation_id=conv["id"], phone=phone, text="?", socket=socket
            )
        assert (status, refused["error_code"]) == (503, "WHATSAPP_DISCONNECTED"), refused
        assert number1.sends() == []
