from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from atende.providers import PROVIDERS, detect_provider, get_provider
from atende.providers.base import (
    ConnectionUpdate,
    ConnectResult,
    GatewayRejected,
    GatewayUnavailable,
    InboundMessage,
    MalformedPayload,
    MediaRef,
    OutboundMessage,
    SessionConfig,
    StatusUpdate,
    WebhookAuthError,
)
from atende.providers.connection_service import ConnectionServiceProvider
from atende.types import MessageStatus, MessageType, ProviderName, SessionState
from tests.fakes.cloud import FakeCloud
from tests.fakes.connection_service import QR_DATA_URL, FakeConnectionService
from tests.fakes.evolution import FakeEvolution
from tests.fakes.server import serve_app
from tests.fakes.waha import FakeWaha
from tests.providers.conftest import Receiver

provider = ConnectionServiceProvider()
builder = FakeConnectionService()


def session(fake: FakeConnectionService | None = None, **kw: Any) -> SessionConfig:
    options = {"timeout_secs": 2.0} | kw.pop("options", {})
    return SessionConfig(
        provider=ProviderName.CONNECTION_SERVICE,
        name=kw.pop("name", "tenant-1"),
        base_url=fake.base_url if fake else "http://cs.invalid",
        api_key=fake.api_key if fake else "k",
        options=options,
        **kw,
    )


@pytest.fixture
async def svc() -> AsyncIterator[FakeConnectionService]:
    fake = FakeConnectionService(sessions={"tenant-1": "connected"})
    async with fake.running():
        yield fake


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


# -- parsing -------------------------------------------------------------------------------------


def test_parse_text() -> None:
    payload = builder.inbound_text("5511987654321", "Oi", msg_id="M1")
    assert only(provider.parse(payload)) == InboundMessage(
        session_name="tenant-1",
        provider_message_id="M1",
        chat_jid="5511987654321@s.whatsapp.net",
        phone="5511987654321",
        from_me=False,
        message_type=MessageType.TEXT,
        text="Oi",
        push_name="Maria",
        timestamp=datetime.fromtimestamp(1729500000, tz=UTC),
    )
    mine = only(provider.parse(builder.inbound_text("551199", "x", from_me=True)))
    assert mine.from_me and mine.push_name is None


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document"])
def test_parse_media(kind: str) -> None:
    payload = builder.inbound_media(
        "551199", kind, "https://svc/media/1", mimetype="x/y", filename="f", caption="c"
    )
    message = only(provider.parse(payload))
    assert message.message_type == MessageType(kind)
    assert message.text == "c"
    assert message.media == MediaRef(
        url="https://svc/media/1", mimetype="x/y", filename="f", caption="c"
    )


def test_parse_group_message() -> None:
    payload = builder.inbound_text("x", "no grupo")
    payload["message"] |= {"from": "120363@g.us", "participant": "5511912345678@s.whatsapp.net"}
    message = only(provider.parse(payload))
    assert (message.is_group, message.phone) == (True, "5511912345678")


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "failed"])
def test_parse_status(status: str) -> None:
    update = only(provider.parse(builder.ack("M1", status)))
    assert update == StatusUpdate(
        "tenant-1",
        "M1",
        MessageStatus(status),
        timestamp=datetime.fromtimestamp(1729500001, tz=UTC),
    )
    assert provider.parse(builder.ack("M1", "pending")) == []


@pytest.mark.parametrize("status", ["connected", "qr", "connecting", "disconnected"])
def test_parse_connection(status: str) -> None:
    update = only(provider.parse(builder.connection(status)))
    assert update == ConnectionUpdate("tenant-1", SessionState(status))
    assert only(provider.parse(builder.qr())).qr == QR_DATA_URL


def test_unknown_events_are_ignored() -> None:
    assert provider.parse({"event": "typing", "session": "tenant-1", "status": "on"}) == []


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {"event": "message", "session": "tenant-1"},
        {"event": "message", "session": "tenant-1", "message": {"from": "1"}},
        {"event": "message", "session": "tenant-1", "message": {"id": "1", "from": "1"}},
        {"event": "message", "session": "t", "message": {"id": "1", "from": "1", "type": "gif"}},
        {"event": "message", "session": "t", "message": {"id": "1", "from": "1", "type": "image"}},
        {"event": "message.status", "session": "tenant-1", "status": "read"},
        {"event": "connection", "session": "tenant-1", "status": "weird"},
        {"event": "connection", "session": "", "status": "qr"},
    ],
)
def test_malformed_payloads(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        provider.parse(payload)


def test_detection_never_confuses_providers() -> None:
    evolution, waha, cloud = FakeEvolution(), FakeWaha(), FakeCloud()
    samples = {
        ProviderName.CONNECTION_SERVICE: [
            builder.inbound_text("1", "x"),
            builder.ack("M", "read"),
            builder.connection("qr"),
        ],
        ProviderName.EVOLUTION: [
            evolution.inbound_text("1", "x"),
            evolution.ack("M", "READ"),
            evolution.connection("open"),
            evolution.qr(),
        ],
        ProviderName.WAHA: [
            waha.inbound_text("1", "x"),
            waha.ack("M", 3),
            waha.connection("WORKING"),
        ],
        ProviderName.CLOUD: [cloud.inbound_text("1", "x"), cloud.ack("w", "read")],
    }
    for name, payloads in samples.items():
        for payload in payloads:
            assert detect_provider(payload) is PROVIDERS[name], (name, payload)
            matching = [n for n, p in PROVIDERS.items() if p.matches(payload)]
            assert matching == [name], (name, payload)
    assert detect_provider({"hello": "world"}) is None
    assert detect_provider([1, 2]) is None


def test_registry() -> None:
    assert isinstance(get_provider("connection_service"), ConnectionServiceProvider)
    for name, registered in PROVIDERS.items():
        assert registered.name == name
    with pytest.raises(ValueError, match="unknown WhatsApp provider"):
        get_provider("telegram")


# -- webhook auth --------------------------------------------------------------------------------


def test_verify() -> None:
    secured = session(webhook_secret="w-secret")
    provider.verify(secured, b"{}", {"X-API-KEY": "w-secret"})
    provider.verify(secured, b"{}", {"x-api-key": "w-secret"})
    for headers in ({}, {"X-API-KEY": "nope"}):
        with pytest.raises(WebhookAuthError):
            provider.verify(secured, b"{}", headers)
    provider.verify(session(), b"{}", {})


async def test_delivery_round_trip() -> None:
    fake = FakeConnectionService(webhook_key="w-secret")
    receiver = Receiver(provider, session(webhook_secret="w-secret"), fail_first=2)
    async with serve_app(receiver.app()) as url:
        response = await fake.deliver(f"{url}/hook", fake.inbound_text("551199", "Oi"))
        assert (response.status_code, receiver.attempts) == (200, 3)
        assert only(receiver.items).text == "Oi"


# -- gateway calls -------------------------------------------------------------------------------


async def test_send(svc: FakeConnectionService, client: httpx.AsyncClient) -> None:
    text = OutboundMessage(None, "5511987654321", MessageType.TEXT, text="Olá")
    result = await provider.send(client, session(svc), text)
    request = svc.last()
    assert (request.method, request.path) == ("POST", "/message/send")
    assert request.headers["x-api-key"] == svc.api_key
    assert request.json == {
        "session": "tenant-1",
        "to": "5511987654321",
        "type": "text",
        "text": "Olá",
    }
    assert result.provider_message_id.startswith("cs-")
    assert result.jid == "5511987654321@s.whatsapp.net"
    image = OutboundMessage(
        "551187654321@s.whatsapp.net",
        "5511987654321",
        MessageType.IMAGE,
        media_url="https://x/a.jpg",
        mimetype="image/jpeg",
        caption="c",
    )
    await provider.send(client, session(svc), image)
    assert svc.last().json == {
        "session": "tenant-1",
        "to": "551187654321@s.whatsapp.net",
        "type": "image",
        "media": {"url": "https://x/a.jpg", "mimetype": "image/jpeg", "caption": "c"},
    }


async def test_send_errors(svc: FakeConnectionService, client: httpx.AsyncClient) -> None:
    message = OutboundMessage(None, "5511900000000", MessageType.TEXT, text="x")
    svc.set_unknown_numbers({"5511900000000"})
    with pytest.raises(GatewayRejected) as rejected:
        await provider.send(client, session(svc), message)
    assert "is not on WhatsApp" in (rejected.value.detail or "")
    svc.fail_next(1, status=500)
    with pytest.raises(GatewayUnavailable):
        await provider.send(client, session(svc), message)
    svc.hang_next(1)
    with pytest.raises(GatewayUnavailable):
        await provider.send(client, session(svc, options={"timeout_secs": 0.2}), message)


async def test_check_number(svc: FakeConnectionService, client: httpx.AsyncClient) -> None:
    svc.set_unknown_numbers({"5511900000000"})
    jid = await provider.check_number(client, session(svc), "5511987654321")
    assert jid == "5511987654321@s.whatsapp.net"
    assert svc.last().path == "/sessions/tenant-1/contacts/5511987654321"
    assert await provider.check_number(client, session(svc), "5511900000000") is None


async def test_connect_status_disconnect(
    svc: FakeConnectionService, client: httpx.AsyncClient
) -> None:
    config = session(svc, name="new", webhook_secret="w", options={"webhook_url": "https://a/wh"})
    assert await provider.connect(client, config) == ConnectResult(SessionState.QR, qr=QR_DATA_URL)
    assert svc.last().json == {"session": "new", "webhook": {"url": "https://a/wh", "apiKey": "w"}}
    assert await provider.connect(client, session(svc)) == ConnectResult(SessionState.CONNECTED)
    assert await provider.status(client, session(svc)) == SessionState.CONNECTED
    assert svc.last().path == "/sessions/tenant-1/status"
    await provider.disconnect(client, session(svc))
    assert (svc.last().method, svc.last().path) == ("DELETE", "/sessions/tenant-1")
    assert await provider.status(client, session(svc)) == SessionState.DISCONNECTED
    await provider.disconnect(client, session(svc))  # 404: already gone


async def test_fetch_media(svc: FakeConnectionService, client: httpx.AsyncClient) -> None:
    url = svc.add_file("a.jpg", b"jpeg!", "image/jpeg")
    content = await provider.fetch_media(client, session(svc), MediaRef(url=url))
    assert (await content.read(), content.mimetype) == (b"jpeg!", "image/jpeg")
    assert svc.last().headers["x-api-key"] == svc.api_key
