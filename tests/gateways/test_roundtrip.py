"""Issue 3 end to end, for every gateway: a customer writes in through the fake gateway's webhook,
an agent on /ws/chat sees it once, answers, the fake receives the documented request, and the
fake's acks come back to the agent as delivered and read."""

from __future__ import annotations

import pytest

from tests.gateways.cases import PHONE, Case, EvolutionCase
from tests.harness import WsClient


async def _sent(agent: WsClient, message_id: str) -> None:
    await agent.expect(
        "message_status", lambda f: f["message_id"] == message_id and f["status"] == "sent"
    )


async def test_customer_in_agent_out_and_acks_back(case: Case) -> None:
    tenant = case.tenant
    async with tenant.chat_socket(tenant.agent_token) as agent:
        payload = case.inbound_text("Oi, tem horário amanhã?")
        answers = [await case.deliver(payload) for _ in range(3)]  # the gateway retried twice
        assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
        assert [a.json()["stored"] for a in answers] == [1, 0, 0]
        first = await agent.expect("new_message")
        assert first["phone_number"] == PHONE
        assert first["message"]["text"] == "Oi, tem horário amanhã?"
        assert first["message"]["from_me"] is False
        await case.deliver(case.inbound_text("marcador"))
        marker = await agent.expect("new_message")
        assert marker["message"]["text"] == "marcador"  # no second copy came before it
        assert [m.text for m in await case.stored()] == ["Oi, tem horário amanhã?", "marcador"]

        await agent.send({"type": "send_message", "phone_number": PHONE, "text": "Temos sim!"})
        sent = await agent.expect("message_sent")
        assert sent["success"] is True
        message_id = sent["message_id"]
        await _sent(agent, message_id)
        [request] = case.sends()
        path, body = case.expected_text("Temos sim!")
        assert (request.method, request.path) == ("POST", path)
        assert request.headers[case.auth_header] == case.auth_value()
        assert request.json == body
        assert case.checks() == []  # the contact's address came with its own message

        wamid = (await case.message(message_id)).whatsapp_message_id
        assert wamid
        for status in ("delivered", "read"):
            answer = await case.deliver(case.ack(wamid, status))
            assert answer.status_code == 200, answer.text
            assert answer.json()["statuses"] == 1
        delivered = await agent.expect("message_delivered")
        assert delivered["message_id"] == message_id
        assert delivered["phone_number"] == PHONE
        read = await agent.expect("message_status", lambda f: f["status"] == "read")
        assert read["message_id"] == message_id
    assert (await case.message(message_id)).status == "read"


async def test_rest_sends_text_and_image_as_documented(case: Case) -> None:
    tenant = case.tenant
    await case.deliver(case.inbound_text("Quero ver o catálogo"))
    [inbound] = await case.stored()
    conversation = str(inbound.conversation_id)
    image = "https://cdn.loja.example/catalogo.jpg"
    async with tenant.chat_socket(tenant.agent_token) as agent, case.http() as http:
        seed003 = await http.post(
            f"/api/conversations/{conversation}/send-message",
            json={"message": "Segue o catálogo"},
            headers=tenant.auth(tenant.agent_token),
        )
        assert seed003.status_code == 200, seed003.text
        await _sent(agent, seed003.json()["message"]["id"])
        seed001 = await http.post(
            f"/api/v1/conversations/{conversation}/messages",
            json={
                "message_type": "image",
                "media_url": image,
                "mimetype": "image/jpeg",
                "caption": "Coleção nova",
                "filename": "catalogo.jpg",
            },
            headers=tenant.auth(tenant.agent_token),
        )
        assert seed001.status_code == 200, seed001.text
        assert seed001.json()["status"] == "pending"
        await _sent(agent, seed001.json()["id"])
    text, media = case.sends()
    assert (text.path, text.json) == case.expected_text("Segue o catálogo")
    assert (media.path, media.json) == case.expected_image(image, "Coleção nova", "catalogo.jpg")
    assert media.headers[case.auth_header] == case.auth_value()


async def test_generic_url_tells_each_gateway_apart(case: Case) -> None:
    tenant = case.tenant
    async with tenant.chat_socket(tenant.agent_token) as agent:
        payload = case.inbound_text("pelo endereço genérico")
        answers = [await case.deliver(payload, url=case.generic_url) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200], answers[0].text
        assert [a.json()["stored"] for a in answers] == [1, 0]
        frame = await agent.expect("new_message")
        assert frame["message"]["text"] == "pelo endereço genérico"

        await agent.send({"type": "send_message", "phone_number": PHONE, "text": "ok"})
        message_id = (await agent.expect("message_sent"))["message_id"]
        await _sent(agent, message_id)
        wamid = (await case.message(message_id)).whatsapp_message_id
        assert wamid
        answer = await case.deliver(case.ack(wamid, "read"), url=case.generic_url)
        assert answer.status_code == 200 and answer.json()["statuses"] == 1, answer.text
        await agent.expect("message_status", lambda f: f["status"] == "read")
    assert len(await case.stored()) == 2


@pytest.mark.parametrize("case", ["evolution-v2", "evolution-v1"], indirect=True)
async def test_evolution_per_event_sub_paths(case: Case) -> None:
    """`webhook_by_events` / `byEvents`: Evolution posts to `<url>/<event-slug>`."""
    assert isinstance(case, EvolutionCase)
    tenant = case.tenant
    async with tenant.chat_socket(tenant.agent_token) as agent:
        payload = case.inbound_text("por evento")
        answers = [await case.deliver(payload, url=case.event_url("messages-upsert"))]
        answers.append(await case.deliver(payload, url=case.event_url("messages-upsert")))
        assert [a.status_code for a in answers] == [200, 200]
        assert [a.json()["stored"] for a in answers] == [1, 0]
        await agent.expect("new_message")

        await agent.send({"type": "send_message", "phone_number": PHONE, "text": "certo"})
        message_id = (await agent.expect("message_sent"))["message_id"]
        await _sent(agent, message_id)
        wamid = (await case.message(message_id)).whatsapp_message_id
        assert wamid
        ack = await case.deliver(
            case.ack(wamid, "delivered"), url=case.event_url("messages-update")
        )
        assert ack.status_code == 200 and ack.json()["statuses"] == 1
        await agent.expect("message_delivered")

        closed = await case.deliver(
            case.connection("disconnected"), url=case.event_url("connection-update")
        )
        assert closed.status_code == 200 and closed.json()["connection"] == 1
        status = await agent.expect("connection_status")
        assert status["whatsapp_connected"] is False
