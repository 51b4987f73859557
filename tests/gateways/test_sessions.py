"""Seed 003's session routes and live connection state against each gateway."""

from __future__ import annotations

import pytest

from tests.gateways.cases import KINDS, PHONE, Case


async def _state(case: Case) -> str:
    async with case.http() as http:
        answer = await http.get(
            f"/api/whatsapp/status/{case.tenant.id}", headers=case.tenant.auth()
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


# The Cloud API has no session webhooks (its account events are checked in test_ingress).
@pytest.mark.parametrize("case", [k for k in KINDS if k != "cloud"], indirect=True)
async def test_connection_webhooks_reach_agents_live(case: Case) -> None:
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        closed = await case.deliver(case.connection("disconnected"))
        assert closed.status_code == 200 and closed.json()["connection"] == 1, closed.text
        frame = await agent.expect("connection_status")
        assert frame["whatsapp_connected"] is False
        assert frame["instance_id"] == case.session_name

        qr = await case.deliver(case.connection("qr"), url=case.generic_url)
        assert qr.status_code == 200 and qr.json()["connection"] == 1, qr.text
        frame = await agent.expect("connection_status")
        assert frame["state"] == "qr" and frame["whatsapp_connected"] is False

        opened = await case.deliver(case.connection("connected"))
        assert opened.status_code == 200, opened.text
        frame = await agent.expect("connection_status")
        assert frame["whatsapp_connected"] is True and frame["state"] == "connected"


async def test_connect_returns_the_gateways_qr_and_tells_agents(case: Case) -> None:
    expected_qr = case.prepare_connect()
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent, case.http() as http:
        answer = await http.post(
            "/api/whatsapp/connect",
            json={"tenant_id": str(case.tenant.id)},
            headers=case.tenant.auth(),
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if expected_qr is None:  # Cloud: a valid token and phone number id is all it takes
            assert body["connected"] is True and body["qr_code"] is None
            return
        assert body["qr_code"] == expected_qr
        assert body["qr_code"].startswith("data:image/png;base64,")
        assert body["connected"] is False and body["status"] == "qr"
        frame = await agent.expect("connection_status", lambda f: f["state"] == "qr")
        assert frame["qr"] == expected_qr
        as_agent = await http.post(
            "/api/whatsapp/connect", json={}, headers=case.tenant.auth(case.tenant.agent_token)
        )
        assert as_agent.status_code == 403
    assert case.fake.api_key not in answer.text


async def test_sending_while_disconnected_is_503_at_once(case: Case) -> None:
    await case.deliver(case.inbound_text("oi"))
    [inbound] = await case.stored()
    if case.has_connection_events:
        assert (await case.deliver(case.connection("disconnected"))).status_code == 200
    else:
        async with case.http() as http:
            out = await http.delete(
                f"/api/whatsapp/disconnect/{case.tenant.id}", headers=case.tenant.auth()
            )
        assert out.status_code == 200 and out.json()["connected"] is False
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent, case.http() as http:
        assert agent.seen[0]["whatsapp_connected"] is False
        answer = await http.post(
            f"/api/conversations/{inbound.conversation_id}/send-message",
            json={"message": "alguém aí?"},
            headers=case.tenant.auth(case.tenant.agent_token),
        )
        assert answer.status_code == 503
        assert answer.json()["error_code"] == "WHATSAPP_DISCONNECTED"
        await agent.send({"type": "send_message", "phone_number": PHONE, "text": "e agora?"})
        error = await agent.expect("error")
        assert error["error_code"] == "WHATSAPP_DISCONNECTED"
    assert case.sends() == []
    assert len(await case.stored()) == 1  # nothing queued


async def test_status_and_disconnect_ask_the_gateway(case: Case) -> None:
    assert await _state(case) == "connected"
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent, case.http() as http:
        out = await http.delete(
            f"/api/whatsapp/disconnect/{case.tenant.id}", headers=case.tenant.auth()
        )
        assert out.status_code == 200, out.text
        assert out.json()["connected"] is False
        frame = await agent.expect("connection_status")
        assert frame["whatsapp_connected"] is False
    if case.has_connection_events:
        assert await _state(case) == "disconnected"  # the gateway says so too
