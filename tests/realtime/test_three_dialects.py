"""One client of each real-time dialect (A: /ws/chat, B: /api/v1/conversations/ws, C: Socket.IO)
on one tenant: all three receive the same events, in the same order, each in its own shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import connect

from tests.harness import Tenant, WsClient
from tests.realtime.sioclient import SioClient, sio_client

PHONE = "5511987654321"

# Canonical event → the frame names each dialect uses for it.
KINDS_A = {
    "new_message": "message",
    "message_status": "status",
    "message_delivered": "status",
    "typing": "typing",
    "conversation_updated": "conversation",
}
KINDS_B = {
    "message_received": "message",
    "message_sent": "message",
    "message_status_updated": "status",
    "typing_start": "typing",
    "typing_stop": "typing",
    "conversation_updated": "conversation",
}
KINDS_C = {
    "message:new": "message",
    "message:status": "status",
    "user_typing": "typing",
    "conversation:updated": "conversation",
}


@asynccontextmanager
async def conversations_socket(tenant: Tenant, token: str, user_id: str) -> AsyncIterator[WsClient]:
    async with connect(f"{tenant.server.ws_base}/api/v1/conversations/ws") as ws:
        client = WsClient(ws)
        await client.send({"type": "auth", "token": token, "user_id": user_id})
        await client.expect("connected")
        yield client


def sequence_of_ws(frames: list[dict[str, Any]], kinds: dict[str, str]) -> list[tuple[int, str]]:
    """(event_id, kind of its first frame) once per event, in arrival order. One event may
    become several frames (a message also updates its conversation's row)."""
    out: list[tuple[int, str]] = []
    for frame in frames:
        kind = kinds.get(str(frame.get("type")))
        if kind is not None and "event_id" in frame:
            _add(out, int(frame["event_id"]), kind)
    return out


def _add(out: list[tuple[int, str]], event_id: int, kind: str) -> None:
    if not out or out[-1][0] != event_id:
        assert all(seen != event_id for seen, _ in out), f"event {event_id} came twice"
        out.append((event_id, kind))


def sequence_of_sio(client: SioClient) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for name, data in client.seen:
        kind = KINDS_C.get(name)
        if kind is not None:
            _add(out, int(data["event_id"]), kind)
    return out


async def _wait_ws(client: WsClient, event_id: int) -> None:
    while not any(f.get("event_id", 0) >= event_id for f in client.seen):
        await client.next()


async def test_all_three_dialects_carry_the_same_events(tenant: Tenant) -> None:
    admin = tenant.admin_token
    async with (
        tenant.chat_socket() as a,
        conversations_socket(tenant, admin, str(tenant.admin_id)) as b,
        sio_client(tenant.server.base_url, admin) as c,
    ):
        await tenant.customer_says("Bom dia")
        first = await c.expect("message:new")
        conv_id = first["conversation_id"]
        await c.emit("join_conversation", {"conversation_id": conv_id})
        await c.expect("joined_conversation")
        async with tenant.http() as http:
            agent = tenant.auth(tenant.agent_token)
            url = f"/api/v1/conversations/{conv_id}"
            assert (await http.post(f"{url}/typing", headers=agent)).status_code == 200
            sent = await http.post(
                f"{url}/messages", json={"content": "Olá!"}, headers=tenant.auth()
            )
            assert sent.status_code == 200, sent.text
            await c.expect("message:status", lambda s: s["status"] == "read")
            assert (await http.post(f"{url}/read", headers=tenant.auth())).status_code == 200
            assigned = await http.post(
                f"{url}/assign", json={"user_id": str(tenant.agent_id)}, headers=tenant.auth()
            )
            assert assigned.status_code == 200, assigned.text
            closed = await http.post(
                f"{url}/status", json={"status": "closed"}, headers=tenant.auth()
            )
            assert closed.status_code == 200, closed.text
        last = await c.expect(
            "conversation:updated", lambda u: u["conversation"]["status"] == "closed"
        )
        await _wait_ws(a, last["event_id"])
        await _wait_ws(b, last["event_id"])

    seq_a = sequence_of_ws(a.seen, KINDS_A)
    seq_b = sequence_of_ws(b.seen, KINDS_B)
    seq_c = sequence_of_sio(c)
    assert seq_a == seq_b == seq_c, (seq_a, seq_b, seq_c)
    kinds = [kind for _, kind in seq_a]
    # customer message, typing, agent message, sent/delivered/read, read, assigned, closed
    assert kinds.count("message") == 2
    assert kinds.count("status") == 3
    assert kinds.count("typing") == 1
    assert kinds.count("conversation") >= 3
    ids = [event_id for event_id, _ in seq_a]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
