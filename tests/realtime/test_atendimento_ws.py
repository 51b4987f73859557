"""Dialect A (/ws/chat, seed 000) end to end against a real server and real WebSocket clients."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from atende.services import sessions as sessions_svc
from atende.services.auth import mint_token
from atende.types import SessionState
from tests.harness import Tenant

PHONE = "5511987654321"


async def test_customer_message_reaches_two_agents_with_the_seed_fields(tenant: Tenant) -> None:
    async with tenant.chat_socket() as admin, tenant.chat_socket(tenant.agent_token) as agent:
        response = await tenant.customer_says("Olá, doutor! Preciso remarcar.", push_name="João")
        assert response.status_code == 200, response.text
        for client in (admin, agent):
            frame = await client.expect("new_message")
            assert set(frame) == {"type", "phone_number", "message", "event_id"}
            assert frame["phone_number"] == PHONE
            message = frame["message"]
            assert set(message) == {"id", "from", "text", "timestamp", "from_me", "push_name"}
            assert message["from"] == PHONE
            assert message["text"] == "Olá, doutor! Preciso remarcar."
            assert message["from_me"] is False
            assert message["push_name"] == "João"
            assert message["timestamp"].endswith("Z")


async def test_connected_greeting_counts_unread(tenant: Tenant) -> None:
    await tenant.customer_says("um")
    await tenant.customer_says("dois")
    async with tenant.chat_socket(greet=False) as client:
        hello = await client.expect("connected")
    assert hello["whatsapp_connected"] is True
    assert hello["unread_count"] == 2
    assert hello["client_id"].startswith("client_")


async def test_greeting_follows_the_session_state_and_what_the_agent_may_see(
    tenant: Tenant,
) -> None:
    await tenant.customer_says("da Ana", phone="5511911110001")
    await tenant.customer_says("do Beto", phone="5511911110002")
    ana = await tenant.conversation_where(lambda c: c["contact"]["phone"].endswith("0001"))
    await tenant.assign(ana["id"], tenant.admin_id)
    await sessions_svc.set_state(
        tenant.server.ctx, tenant.session_id, state=SessionState.DISCONNECTED
    )
    async with (
        tenant.chat_socket(greet=False) as admin,
        tenant.chat_socket(tenant.agent_token, greet=False) as agent,
    ):
        admin_hello = await admin.expect("connected")
        agent_hello = await agent.expect("connected")
    assert admin_hello["whatsapp_connected"] is False
    assert (admin_hello["unread_count"], agent_hello["unread_count"]) == (2, 1)


async def test_send_message_is_confirmed_then_delivered_and_read(tenant: Tenant) -> None:
    async with tenant.chat_socket() as client:
        await client.send({"type": "send_message", "phone_number": PHONE, "text": "Olá!"})
        sent = await client.expect("message_sent")
        assert sent["success"] is True
        delivered = await client.expect("message_delivered")
        assert delivered["message_id"] == sent["message_id"]
        assert delivered["phone_number"] == PHONE
        read = await client.expect("message_status", lambda f: f["status"] == "read")
        assert read["message_id"] == sent["message_id"]


async def test_same_webhook_three_times_at_once_stores_one(tenant: Tenant) -> None:
    async with tenant.chat_socket() as client:
        responses = await asyncio.gather(
            *(tenant.customer_says("só uma vez", msg_id="dup-1") for _ in range(3))
        )
        assert all(r.status_code == 200 for r in responses)
        assert sum(r.json()["stored"] for r in responses) == 1
        assert sum(r.json()["duplicates"] for r in responses) == 2
        await client.expect("new_message")
        await tenant.customer_says("marcador")
        marker = await client.expect("new_message")
        assert marker["message"]["text"] == "marcador"  # no second copy came before it
    async with tenant.http() as http:
        page = await http.get(
            f"/api/tenants/{tenant.id}/chat/conversations/{PHONE}/messages", headers=tenant.auth()
        )
    texts = [m["text"] for m in page.json()["messages"]]
    assert texts == ["só uma vez", "marcador"]


async def test_resume_with_last_event_id_gets_exactly_what_was_missed(tenant: Tenant) -> None:
    async with tenant.chat_socket() as client:
        await tenant.customer_says("antes")
        first = await client.expect("new_message")
    last_seen = first["event_id"]
    for i in range(5):
        await tenant.customer_says(f"perdida {i}")
    async with tenant.chat_socket(last_event_id=last_seen) as resumed:
        missed = await resumed.collect(5, "new_message")
        await tenant.customer_says("ao vivo")
        live = await resumed.expect("new_message")
    assert [f["message"]["text"] for f in missed] == [f"perdida {i}" for i in range(5)]
    ids = [f["event_id"] for f in missed] + [live["event_id"]]
    assert ids == sorted(set(ids)) and ids[0] > last_seen
    assert live["message"]["text"] == "ao vivo"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "INVALID_INPUT"),
        ('{"type": "teleport"}', "INVALID_INPUT"),
        ('{"type": "send_message", "phone_number": "5511987654321"}', "INVALID_INPUT"),
        (
            '{"type": "send_message", "phone_number": "5511987654321", "text": "'
            + "x" * 5000
            + '"}',
            "MESSAGE_TOO_LONG",
        ),
        ('{"type": "send_message", "phone_number": "12ab", "text": "oi"}', "INVALID_PHONE_NUMBER"),
        ("[1, 2, 3]", "INVALID_INPUT"),
        ('{"type": "mark_as_read"}', "INVALID_INPUT"),
    ],
)
async def test_bad_frame_gets_error_and_socket_stays_open(
    tenant: Tenant, frame: str, code: str
) -> None:
    async with tenant.chat_socket() as client:
        await client.send(frame)
        error = await client.expect("error")
        assert error["error_code"] == code
        assert error["message"]
        await client.send({"type": "ping"})
        pong = await client.expect("pong")
        assert pong["timestamp"].endswith("Z")
    async with tenant.http() as http:
        listed = await http.get(
            f"/api/tenants/{tenant.id}/chat/conversations", headers=tenant.auth()
        )
    assert listed.json()["conversations"] == []  # nothing was stored by any bad frame


async def _close_of(url: str, first: str | None = None) -> tuple[int, str]:
    async with connect(url) as ws:
        if first is not None:
            await ws.send(first)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), timeout=10)
    rcvd = info.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason


async def test_bad_and_expired_tokens_close_with_a_reason(tenant: Tenant) -> None:
    base = f"{tenant.server.ws_base}/ws/chat?tenant_id={tenant.id}"
    code, reason = await _close_of(f"{base}&token=garbage")
    assert (code, reason) == (4401, "Invalid token")
    expired = mint_token(
        tenant.server.settings,
        user_id=tenant.admin_id,
        tenant_id=tenant.id,
        role="admin",
        ttl_secs=-10,
    )
    code, reason = await _close_of(f"{base}&token={expired}")
    assert (code, reason) == (4401, "Token expired")
    code, reason = await _close_of(base, '{"type": "auth", "token": "nope"}')
    assert code == 4401


async def test_three_ways_to_authenticate(tenant: Tenant) -> None:
    base = f"{tenant.server.ws_base}/ws/chat?tenant_id={tenant.id}"
    async with connect(
        base, additional_headers={"Authorization": f"Bearer {tenant.admin_token}"}
    ) as ws:
        assert '"connected"' in await asyncio.wait_for(ws.recv(), 10)
    async with connect(base) as ws:
        await ws.send(f'{{"type": "auth", "token": "{tenant.admin_token}"}}')
        assert '"connected"' in await asyncio.wait_for(ws.recv(), 10)
    async with tenant.chat_socket() as client:
        assert client.seen[0]["type"] == "connected"


async def test_foreign_origin_is_refused(tenant: Tenant) -> None:
    url = f"{tenant.server.ws_base}/ws/chat?tenant_id={tenant.id}&token={tenant.admin_token}"
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    async with connect(url, origin="http://inbox.example") as ws:  # type: ignore[arg-type]
        assert '"connected"' in await asyncio.wait_for(ws.recv(), 10)


async def test_token_of_another_tenant_is_refused_and_events_do_not_cross(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    url = f"{tenant.server.ws_base}/ws/chat?tenant_id={tenant.id}&token={other_tenant.admin_token}"
    code, _ = await _close_of(url)
    assert code == 4403
    async with other_tenant.chat_socket() as spy, tenant.chat_socket() as own:
        await tenant.customer_says("segredo do tenant A")
        await own.expect("new_message")
        await other_tenant.customer_says("do B")
        frame = await spy.expect("new_message")
        assert frame["message"]["text"] == "do B"
        assert all("segredo" not in str(f) for f in spy.seen)


async def test_disconnect_frame_closes_cleanly(tenant: Tenant) -> None:
    async with tenant.chat_socket() as client:
        await client.send({"type": "disconnect", "reason": "client_request"})
        with pytest.raises(ConnectionClosed) as info:
            await client.next()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000


async def test_typing_and_mark_as_read_reach_other_agents(tenant: Tenant) -> None:
    await tenant.customer_says("oi")
    async with tenant.chat_socket() as admin, tenant.chat_socket(tenant.agent_token) as agent:
        await admin.send({"type": "typing", "phone_number": PHONE, "is_typing": True})
        typing = await agent.expect("typing")
        assert typing["phone_number"] == PHONE and typing["is_typing"] is True
        await admin.send({"type": "mark_as_read", "phone_number": PHONE})
        update = await agent.expect("conversation_updated")
        assert update["conversation"]["unread_count"] == 0


async def test_idle_socket_is_closed_after_the_timeout(database_url: str) -> None:
    from tests.harness import make_tenant, run_server, settings_for

    async with run_server(settings_for(database_url, ws_idle_timeout_secs=0.3)) as quick:
        tenant = await make_tenant(quick)
        async with tenant.chat_socket() as client:
            with pytest.raises(ConnectionClosed) as info:
                await client.next(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4408, "Inactivity timeout")


async def test_frame_flood_gets_rate_limited_and_socket_survives(tenant: Tenant) -> None:
    async with tenant.chat_socket() as client:
        for _ in range(100):
            await client.send({"type": "ping"})
        limited = await client.expect("error", lambda f: f["error_code"] == "RATE_LIMIT_EXCEEDED")
        assert limited["retry_after"] == 1
        await tenant.customer_says("ainda aqui")
        frame = await client.expect("new_message")
        assert frame["message"]["text"] == "ainda aqui"


async def test_agent_never_sees_a_conversation_assigned_to_someone_else(tenant: Tenant) -> None:
    from atende.services import accounts
    from atende.types import Role

    ctx = tenant.server.ctx
    other = await accounts.create_user(
        ctx,
        tenant_id=tenant.id,
        email=f"o-{tenant.id}@t.test",
        password="correct-horse-battery",
        role=Role.AGENT,
    )
    other_token = mint_token(ctx.settings, user_id=other.id, tenant_id=tenant.id, role="agent")
    await tenant.customer_says("para o outro agente")
    async with tenant.http() as http:
        conv = (await http.get("/api/v1/conversations", headers=tenant.auth())).json()[0]
        assigned = await http.post(
            f"/api/v1/conversations/{conv['id']}/assign",
            json={"user_id": str(other.id)},
            headers=tenant.auth(),
        )
        assert assigned.status_code == 200
        hidden = await http.get(
            f"/api/v1/conversations/{conv['id']}/messages", headers=tenant.auth(tenant.agent_token)
        )
        assert hidden.status_code == 403
        assert (
            await http.get("/api/v1/conversations", headers=tenant.auth(tenant.agent_token))
        ).json() == []
    async with (
        tenant.chat_socket(tenant.agent_token) as agent,
        tenant.chat_socket(other_token) as owner,
        tenant.chat_socket() as admin,
    ):
        await tenant.customer_says("segredo do atribuído")
        await owner.expect("new_message")
        await admin.expect("new_message")
        await tenant.customer_says("outro cliente", phone="5511911112222")
        visible = await agent.expect("new_message")
        assert visible["message"]["text"] == "outro cliente"
        assert all("segredo" not in str(f) for f in agent.seen)
