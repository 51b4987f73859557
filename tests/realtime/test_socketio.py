"""Dialect C (Socket.IO at /socket.io, seed 002) end to end: real server, real python-socketio
clients, over both the websocket and the long-polling transports."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import socketio

from atende.services.auth import mint_token
from tests.harness import Tenant
from tests.realtime.sioclient import SioClient, sio_client

PHONE = "5511987654321"
OTHER_PHONE = "5521912345678"
TRANSPORTS = ["websocket", "polling"]


async def _conversation_of(tenant: Tenant, client: SioClient, text: str, phone: str = PHONE) -> str:
    mark = len(client.seen)
    response = await tenant.customer_says(text, phone=phone)
    assert response.status_code == 200, response.text
    message = await client.expect("message:new", lambda m: m["content"]["text"] == text, after=mark)
    return str(message["conversation_id"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connect_ping_and_a_customer_message(tenant: Tenant, transport: str) -> None:
    async with sio_client(tenant.server.base_url, tenant.admin_token, transport=transport) as c:
        hello = c.events("connected")[0]
        assert hello["user_id"] == str(tenant.admin_id)
        assert hello["message"]
        await c.emit("ping")
        pong = await c.expect("pong")
        assert pong["timestamp"].endswith("Z")
        await tenant.customer_says("Olá pelo Socket.IO", push_name="Ana")
        message = await c.expect("message:new")
    # The full Message object of seed 002, plus the tenant's event id.
    for key in (
        "id",
        "conversation_id",
        "direction",
        "sender_type",
        "message_type",
        "content",
        "status",
        "whatsapp_message_id",
        "created_at",
        "sent_at",
        "event_id",
    ):
        assert key in message, key
    assert message["direction"] == "inbound"
    assert message["content"]["text"] == "Olá pelo Socket.IO"
    assert isinstance(message["event_id"], int)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_join_typing_and_statuses(tenant: Tenant, transport: str) -> None:
    base = tenant.server.base_url
    async with (
        sio_client(base, tenant.admin_token, transport=transport) as admin,
        sio_client(base, tenant.agent_token, transport=transport) as agent,
    ):
        conv_id = await _conversation_of(tenant, admin, "oi")
        for client in (admin, agent):
            await client.emit("join_conversation", {"conversation_id": conv_id})
            joined = await client.expect("joined_conversation")
            assert joined["conversation_id"] == conv_id
        await admin.emit("typing_start", {"conversation_id": conv_id})
        typing = await agent.expect("user_typing")
        assert typing == {
            **typing,
            "conversation_id": conv_id,
            "user_id": str(tenant.admin_id),
            "typing": True,
        }
        await admin.emit("typing_stop", {"conversation_id": conv_id})
        stopped = await agent.expect("user_typing", lambda t: t["typing"] is False)
        # Ordered delivery: once the admin has an event newer than its own typing, it would
        # already have received that typing if it had been sent to it.
        async with tenant.http() as http:
            sent = await http.post(
                f"/api/v1/conversations/{conv_id}/messages",
                json={"content": "Resposta"},
                headers=tenant.auth(),
            )
        assert sent.status_code == 200, sent.text
        message_id = sent.json()["id"]
        outbound = await admin.expect("message:new", lambda m: m["id"] == message_id)
        assert outbound["event_id"] > stopped["event_id"]
        assert admin.events("user_typing") == []
        read = await admin.expect("message:status", lambda s: s["status"] == "read")
        assert read["message_id"] == message_id and read["timestamp"].endswith("Z")
        await agent.emit("leave_conversation", {"conversation_id": conv_id})
        left = await agent.expect("left_conversation")
        assert left["conversation_id"] == conv_id


async def test_bad_tokens_are_refused_with_a_reason(tenant: Tenant) -> None:
    base = tenant.server.base_url
    expired = mint_token(
        tenant.server.settings,
        user_id=tenant.admin_id,
        tenant_id=tenant.id,
        role="admin",
        ttl_secs=-10,
    )
    for auth, reason in (
        ({"token": "garbage"}, "Invalid token"),
        ({"token": expired}, "Token expired"),
        ({}, "Missing token"),
    ):
        client = SioClient()
        with pytest.raises(socketio.exceptions.ConnectionError) as info:
            await client.connect(base, auth, "websocket")
        assert info.value is not None
        assert client.refused == {"message": reason}
        await client.close()


async def test_foreign_tenant_conversation_cannot_be_joined_nor_seen(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    base = tenant.server.base_url
    async with (
        sio_client(base, tenant.admin_token) as own,
        sio_client(base, other_tenant.admin_token) as spy,
    ):
        conv_id = await _conversation_of(tenant, own, "segredo do tenant A")
        await spy.emit("join_conversation", {"conversation_id": conv_id})
        refused = await spy.expect("error")
        assert refused["message"] == "Forbidden"
        mark = len(spy.seen)
        await spy.emit("join_conversation", {"conversation_id": str(uuid.uuid4())})
        assert (await spy.expect("error", after=mark))["message"] == "Forbidden"
        await spy.emit("typing_start", {"conversation_id": conv_id})
        await spy.ping()
        await tenant.customer_says("mais um segredo")
        await own.expect("message:new", lambda m: m["content"]["text"] == "mais um segredo")
        await other_tenant.customer_says("do B")
        await spy.expect("message:new", lambda m: m["content"]["text"] == "do B")
        assert all("segredo" not in str(data) for _, data in spy.seen)
        assert spy.events("joined_conversation") == []
        assert own.events("user_typing") == []


@pytest.mark.parametrize(
    ("event", "payload", "message"),
    [
        ("join_conversation", {"conversation_id": "not-a-uuid"}, "Invalid conversation_id"),
        ("join_conversation", {}, "conversation_id required"),
        ("join_conversation", [1, 2, 3], "conversation_id required"),
        ("join_conversation", None, "conversation_id required"),
        ("typing_start", "just a string", "conversation_id required"),
        ("leave_conversation", {"conversation_id": 42}, "conversation_id required"),
        ("teleport", {"x": 1}, "Unknown event 'teleport'"),
    ],
)
async def test_bad_input_gets_error_and_socket_stays_open(
    tenant: Tenant, event: str, payload: object, message: str
) -> None:
    async with sio_client(tenant.server.base_url, tenant.admin_token) as client:
        await client.emit(event, payload)
        error = await client.expect("error")
        assert error["message"] == message
        assert "event_id" in error
        await client.ping()
        assert client.sio.connected


async def test_typing_is_limited_to_ten_per_five_seconds(tenant: Tenant) -> None:
    async with sio_client(tenant.server.base_url, tenant.admin_token) as client:
        conv_id = await _conversation_of(tenant, client, "digitando")
        for _ in range(11):
            await client.emit("typing_start", {"conversation_id": conv_id})
        error = await client.expect("error")
        assert "Too many typing events" in error["message"]
        await client.ping()
        assert len(client.events("error")) == 1


async def test_fourth_connection_of_a_user_drops_the_oldest(tenant: Tenant) -> None:
    base = tenant.server.base_url
    async with (
        sio_client(base, tenant.agent_token) as first,
        sio_client(base, tenant.agent_token) as second,
        sio_client(base, tenant.agent_token) as third,
    ):
        await first.ping()
        assert not first.disconnected.is_set()
        async with sio_client(base, tenant.agent_token) as fourth:
            await asyncio.wait_for(first.disconnected.wait(), timeout=10)
            for still in (second, third, fourth):
                await still.ping()
                assert still.sio.connected


async def test_resume_with_last_event_id_gets_exactly_what_was_missed(tenant: Tenant) -> None:
    base = tenant.server.base_url
    async with sio_client(base, tenant.admin_token) as client:
        await tenant.customer_says("antes")
        first = await client.expect("message:new")
    for i in range(4):
        await tenant.customer_says(f"perdida {i}")
    async with sio_client(base, tenant.admin_token, last_event_id=first["event_id"]) as resumed:
        missed = await resumed.collect("message:new", 4)
        await tenant.customer_says("ao vivo")
        live = await resumed.expect("message:new", lambda m: m["content"]["text"] == "ao vivo")
    assert [m["content"]["text"] for m in missed] == [f"perdida {i}" for i in range(4)]
    ids = [m["event_id"] for m in resumed.events("message:new")]
    assert ids == sorted(set(ids)) and ids[0] > first["event_id"] and ids[-1] == live["event_id"]
    assert resumed.seen[0][0] == "connected"  # greeting first, then the replay


async def test_last_event_id_from_the_future_asks_for_a_resync(tenant: Tenant) -> None:
    async with sio_client(
        tenant.server.base_url, tenant.admin_token, last_event_id=10**9
    ) as client:
        resync = await client.expect("resync_required")
        assert isinstance(resync["event_id"], int)


async def test_agent_never_receives_a_conversation_assigned_to_someone_else(
    tenant: Tenant,
) -> None:
    base = tenant.server.base_url
    async with (
        sio_client(base, tenant.admin_token) as admin,
        sio_client(base, tenant.agent_token) as agent,
    ):
        private = await _conversation_of(tenant, admin, "primeira", phone=PHONE)
        await agent.expect("message:new", lambda m: m["conversation_id"] == private)
        async with tenant.http() as http:
            assigned = await http.post(
                f"/api/v1/conversations/{private}/assign",
                json={"user_id": str(tenant.admin_id)},
                headers=tenant.auth(),
            )
        assert assigned.status_code == 200, assigned.text
        await admin.expect("conversation:updated", lambda u: u["change"] == "assigned")
        await agent.emit("join_conversation", {"conversation_id": private})
        assert (await agent.expect("error"))["message"] == "Forbidden"
        mark = len(agent.seen)
        await tenant.customer_says("confidencial", phone=PHONE)
        await tenant.customer_says("para todos", phone=OTHER_PHONE)
        await admin.expect("message:new", lambda m: m["content"]["text"] == "confidencial")
        await agent.expect("message:new", lambda m: m["content"]["text"] == "para todos")
        later = agent.seen[mark:]
    assert all(private not in str(data) and "confidencial" not in str(data) for _, data in later)
