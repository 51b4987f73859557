"""Two `atende serve` processes behind no load balancer at all: clients on one, traffic on the
other, one PostgreSQL and one Redis between them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as redis
from websockets.asyncio.client import connect

from tests.harness import Tenant, WsClient
from tests.multi.conftest import Cluster, wait_until
from tests.realtime.sioclient import sio_client

PHONE = "5511987654321"


@asynccontextmanager
async def conversations_socket(tenant: Tenant) -> AsyncIterator[WsClient]:
    async with connect(f"{tenant.server.ws_base}/api/v1/conversations/ws") as ws:
        client = WsClient(ws)
        await client.send({"type": "auth", "token": tenant.admin_token})
        await client.expect("connected")
        yield client


async def test_a_webhook_into_a_reaches_every_dialect_on_b(cluster: Cluster) -> None:
    tenant = await cluster.new_tenant()
    on_a, on_b = cluster.on(tenant, cluster.a), cluster.on(tenant, cluster.b)
    async with (
        on_b.chat_socket() as dialect_a,
        conversations_socket(on_b) as dialect_b,
        sio_client(on_b.server.base_url, on_b.admin_token) as dialect_c,
    ):
        response = await on_a.customer_says("Olá, instância A!")
        assert response.status_code == 200, response.text
        frame_a = await dialect_a.expect("new_message")
        frame_b = await dialect_b.expect("message_received")
        frame_c = await dialect_c.expect("message:new")
        # Presence and unread live in Redis under seed 000's keys, shared by both instances.
        async with redis.Redis.from_url(cluster.redis.url) as shared:
            connections = await shared.smembers(f"ws:tenant:{tenant.id}:connections")
            unread = await shared.get(f"unread:{tenant.id}:{PHONE}")
        assert len(connections) == 3
        assert unread == b"1"
    assert frame_a["message"]["text"] == "Olá, instância A!"
    assert frame_b["data"]["content"]["text"] == "Olá, instância A!"
    assert frame_c["content"]["text"] == "Olá, instância A!"
    assert frame_a["event_id"] == frame_b["event_id"] == frame_c["event_id"]


async def test_the_101st_send_in_a_minute_is_refused_wherever_it_lands(cluster: Cluster) -> None:
    tenant = await cluster.new_tenant()
    on = [cluster.on(tenant, cluster.a), cluster.on(tenant, cluster.b)]
    await on[0].customer_says("quero falar")
    path = f"/api/tenants/{tenant.id}/chat/send"
    gate = asyncio.Semaphore(16)  # concurrent sends race the shared counter on both instances
    async with on[0].http() as http_a, on[1].http() as http_b:
        clients = [http_a, http_b]

        async def send(i: int) -> httpx.Response:
            async with gate:
                return await clients[i % 2].post(
                    path,
                    json={"phone_number": PHONE, "text": f"resposta {i}"},
                    headers=tenant.auth(),
                )

        responses = await asyncio.gather(*(send(i) for i in range(106)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * 100 + [429] * 6, [r.text for r in responses if r.status_code >= 400]
        for client in clients:  # and the next one, on either instance
            refused = await client.post(
                path, json={"phone_number": PHONE, "text": "uma a mais"}, headers=tenant.auth()
            )
            assert refused.status_code == 429, refused.text
            body = refused.json()
            assert body["error_code"] == "RATE_LIMIT_EXCEEDED"
            assert 1 <= body["retry_after"] <= 60
            assert refused.headers["Retry-After"] == str(body["retry_after"])


async def test_fourth_socketio_connection_on_another_instance_drops_the_oldest(
    cluster: Cluster,
) -> None:
    tenant = await cluster.new_tenant()
    on_a, on_b = cluster.on(tenant, cluster.a), cluster.on(tenant, cluster.b)
    token = tenant.agent_token
    async with (
        sio_client(on_a.server.base_url, token) as first,
        sio_client(on_a.server.base_url, token) as second,
        sio_client(on_b.server.base_url, token) as third,
    ):
        await first.ping()
        async with sio_client(on_b.server.base_url, token) as fourth:
            await asyncio.wait_for(first.disconnected.wait(), timeout=10)
            for still in (second, third, fourth):
                await still.ping()


async def test_redis_restart_mid_stream_loses_nothing(cluster: Cluster) -> None:
    tenant = await cluster.new_tenant()
    on_a, on_b = cluster.on(tenant, cluster.a), cluster.on(tenant, cluster.b)
    async with on_b.chat_socket() as live_b, on_a.chat_socket() as live_a:
        await on_a.customer_says("antes")
        before = await live_b.expect("new_message")
        await live_a.expect("new_message")

        cluster.redis.stop()
        during = [f"durante {i}" for i in range(3)]
        for text in during:
            response = await on_a.customer_says(text)
            assert response.status_code == 200, response.text  # stored, Redis or not
        local = await live_a.collect(3, "new_message")  # A still serves its own clients
        assert [f["message"]["text"] for f in local] == during

        await cluster.redis.start()

        async def b_listens_again() -> bool:
            return await cluster.b.metric("atende_redis_subscribed") == 1.0

        await wait_until(b_listens_again, "instance B to resubscribe to Redis")
        assert await cluster.b.metric("atende_redis_reconnects_total") >= 1
        await on_a.customer_says("depois")
        # B's stream sees the id jump and fills the gap from the log, in order.
        got = await live_b.collect(4, "new_message")
    assert [f["message"]["text"] for f in got] == [*during, "depois"]

    async with on_b.chat_socket(last_event_id=before["event_id"]) as resumer:
        missed = await resumer.collect(4, "new_message")
    assert [f["message"]["text"] for f in missed] == [*during, "depois"]
    ids = [f["event_id"] for f in missed]
    assert ids == sorted(set(ids))
