from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from atende.providers import detect_provider, get_provider
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
from atende.providers.waha import WahaProvider, hmac_sha512
from atende.types import MessageStatus, MessageType, ProviderName, SessionState
from tests.fakes.server import QR_PNG_BASE64, serve_app
from tests.fakes.waha import FakeWaha
from tests.providers.conftest import Receiver

provider = WahaProvider()
builder = FakeWaha()  # payload builders only
DOCS_BODY = b'{"event":"message","session":"default","engine":"WEBJS"}'


def session(fake: FakeWaha | None = None, **kw: Any) -> SessionConfig:
    options = {"timeout_secs": 2.0} | kw.pop("options", {})
    return SessionConfig(
        provider=ProviderName.WAHA,
        name=kw.pop("name", "default"),
        base_url=fake.base_url if fake else "http://waha.invalid",
        api_key=fake.api_key if fake else "k",
        options=options,
        **kw,
    )


@pytest.fixture
async def waha() -> AsyncIterator[FakeWaha]:
    fake = FakeWaha(sessions={"default": "WORKING"})
    async with fake.running():
        yield fake


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["message", "message.any"])
def test_parse_text(event: str) -> None:
    payload = builder.inbound_text("5511987654321", "Oi", msg_id="3EB0A1", event=event)
    assert only(provider.parse(payload)) == InboundMessage(
        session_name="default",
        provider_message_id="3EB0A1",
        chat_jid="5511987654321@c.us",
        phone="5511987654321",
        from_me=False,
        message_type=MessageType.TEXT,
        text="Oi",
        push_name="Maria",
        timestamp=datetime.fromtimestamp(1729500000, tz=UTC),
    )


def test_parse_noweb_push_name_and_from_me() -> None:
    noweb = FakeWaha(engine="NOWEB")
    assert only(provider.parse(noweb.inbound_text("551199", "Oi"))).push_name == "Maria"
    mine = builder.inbound_text("5511987654321", "do celular", from_me=True, event="message.any")
    message = only(provider.parse(mine))
    assert message.from_me and message.chat_jid == "5511987654321@c.us"  # `to`, not `from`
    assert message.push_name is None


@pytest.mark.parametrize(
    ("mimetype", "expected"),
    [
        ("image/jpeg", MessageType.IMAGE),
        ("video/mp4", MessageType.VIDEO),
        ("audio/ogg; codecs=opus", MessageType.AUDIO),
        ("application/pdf", MessageType.DOCUMENT),
    ],
)
def test_parse_media(mimetype: str, expected: MessageType) -> None:
    payload = builder.inbound_media(
        "5511987654321", mimetype=mimetype, caption="legenda", filename="f.bin"
    )
    message = only(provider.parse(payload))
    assert message.message_type == expected
    assert message.text == "legenda"
    assert message.media == MediaRef(
        url="http://localhost:3000/api/files/x.jpg",
        mimetype=mimetype,
        filename="f.bin",
        caption="legenda",
    )


@pytest.mark.parametrize(
    ("hint", "expected"),
    [("ptt", MessageType.AUDIO), ("image", MessageType.IMAGE), (None, MessageType.DOCUMENT)],
)
def test_media_not_downloaded_uses_type_hint(hint: str | None, expected: MessageType) -> None:
    payload = builder.inbound_media("551199", url=None)
    if hint:
        payload["payload"]["_data"]["type"] = hint
    message = only(provider.parse(payload))
    assert message.message_type == expected
    assert message.media.url is None


def test_parse_group_and_lid() -> None:
    group = builder.inbound_text("x", "no grupo", from_jid="120363@g.us")
    group["payload"]["participant"] = "5511912345678@c.us"
    message = only(provider.parse(group))
    assert (message.is_group, message.participant, message.phone) == (
        True,
        "5511912345678@c.us",
        "5511912345678",
    )
    lid = builder.inbound_text("x", "Oi", from_jid="12345@lid")
    assert only(provider.parse(lid)).phone is None
    lid["payload"]["_data"]["key"] = {"remoteJidAlt": "5511987654321@s.whatsapp.net"}
    assert only(provider.parse(lid)).phone == "5511987654321"


def test_empty_message_is_skipped() -> None:
    payload = builder.inbound_text("551199", "")
    payload["payload"]["body"] = None
    assert provider.parse(payload) == []


@pytest.mark.parametrize(
    ("ack", "expected"),
    [
        (-1, MessageStatus.FAILED),
        (1, MessageStatus.SENT),
        (2, MessageStatus.DELIVERED),
        (3, MessageStatus.READ),
        (4, MessageStatus.READ),
    ],
)
def test_parse_ack(ack: int, expected: MessageStatus) -> None:
    update = only(provider.parse(builder.ack("4CC5EDD6", ack)))
    assert isinstance(update, StatusUpdate)
    assert (update.provider_message_id, update.status) == ("4CC5EDD6", expected)
    assert (update.error is not None) == (ack == -1)


def test_ack_pending_and_inbound_receipts_are_ignored() -> None:
    assert provider.parse(builder.ack("X", 0)) == []
    theirs = builder.ack("X", 3)
    theirs["payload"]["fromMe"] = False
    assert provider.parse(theirs) == []


def test_group_ack_id_keeps_the_message_part() -> None:
    update = only(provider.parse(builder.ack("true_111@g.us_4CC5EDD6_9999@lid", 2)))
    assert update.provider_message_id == "4CC5EDD6"


@pytest.mark.parametrize("shape", ["docs", "source"])
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("STOPPED", SessionState.DISCONNECTED),
        ("STARTING", SessionState.CONNECTING),
        ("SCAN_QR_CODE", SessionState.QR),
        ("WORKING", SessionState.CONNECTED),
        ("FAILED", SessionState.DISCONNECTED),
    ],
)
def test_parse_session_status(shape: Any, status: str, expected: SessionState) -> None:
    update = only(provider.parse(builder.connection(status, shape=shape)))
    assert isinstance(update, ConnectionUpdate)
    assert (update.session_name, update.state, update.qr) == ("default", expected, None)
    assert (update.error is not None) == (status == "FAILED")
    assert update.phone == ("5511999990000" if status == "WORKING" else None)


def test_unknown_events_are_ignored() -> None:
    assert provider.parse(builder.envelope("presence.update", {"id": "x"})) == []
    assert provider.parse(builder.connection("SOMETHING_NEW")) == []


@pytest.mark.parametrize(
    "payload",
    [
        "x",
        {"session": "default", "payload": {}},
        {"event": "message", "payload": {}},
        {"event": "message", "session": "default"},
        {"event": "message", "session": "default", "payload": {"from": "1@c.us", "body": "x"}},
        {"event": "message", "session": "default", "payload": {"id": "x", "body": "x"}},
        {"event": "message.ack", "session": "default", "payload": {"ack": 3}},
        {"event": "session.status", "session": "default", "payload": {"name": "default"}},
    ],
)
def test_malformed_payloads(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        provider.parse(payload)


def test_matches_and_detection() -> None:
    payload = builder.inbound_text("551199", "Oi")
    assert provider.matches(payload)
    assert provider.session_names(payload) == ["default"]
    assert detect_provider(payload) is get_provider(ProviderName.WAHA)
    assert not provider.matches({"event": "message", "session": "s", "message": {}})


# -- webhook auth --------------------------------------------------------------------------------


def test_hmac_matches_the_docs_test_vector() -> None:
    digest = hmac_sha512("my-secret-key", DOCS_BODY)
    assert digest.startswith("208f8a55") and digest.endswith("53fa89")
    secured = session(webhook_secret="my-secret-key")
    headers = {"X-Webhook-Hmac": digest, "X-Webhook-Hmac-Algorithm": "sha512"}
    provider.verify(secured, DOCS_BODY, headers)
    provider.verify(secured, DOCS_BODY, {"x-webhook-hmac": digest.upper()})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Hmac": "00" * 64},
        {"X-Webhook-Hmac": hmac_sha512("other-key", DOCS_BODY)},
        {
            "X-Webhook-Hmac": hmac_sha512("my-secret-key", DOCS_BODY),
            "X-Webhook-Hmac-Algorithm": "md5",
        },
    ],
)
def test_verify_rejects(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookAuthError):
        provider.verify(session(webhook_secret="my-secret-key"), DOCS_BODY, headers)


def test_verify_rejects_a_tampered_body() -> None:
    headers = {"X-Webhook-Hmac": hmac_sha512("my-secret-key", DOCS_BODY)}
    with pytest.raises(WebhookAuthError):
        provider.verify(session(webhook_secret="my-secret-key"), DOCS_BODY + b" ", headers)
    provider.verify(session(), b"anything", {})  # no secret configured: accepted


async def test_delivery_round_trip_with_retries() -> None:
    fake = FakeWaha(hmac_key="k3y")
    receiver = Receiver(provider, session(webhook_secret="k3y"), fail_first=1)
    async with serve_app(receiver.app()) as url:
        response = await fake.deliver(f"{url}/hook", fake.ack("ABC", 3))
        assert (response.status_code, receiver.attempts) == (200, 2)
        assert only(receiver.items).status == MessageStatus.READ
        receiver.attempts = 0
        response = await FakeWaha().deliver(f"{url}/hook", fake.ack("ABC", 3))
        assert response.status_code == 401  # unsigned
        assert receiver.attempts == 3  # WAHA retries whatever the status, boundedly


# -- gateway calls -------------------------------------------------------------------------------


def outbound(kind: MessageType = MessageType.TEXT, **kw: Any) -> OutboundMessage:
    fields: dict[str, Any] = {"to_jid": None, "phone": "5511987654321", "message_type": kind}
    return OutboundMessage(**(fields | kw))


@pytest.mark.parametrize("engine", ["WEBJS", "NOWEB", "GOWS"])
async def test_send_text(waha: FakeWaha, client: httpx.AsyncClient, engine: Any) -> None:
    waha.engine = engine
    result = await provider.send(client, session(waha), outbound(text="Olá"))
    request = waha.last()
    assert (request.method, request.path) == ("POST", "/api/sendText")
    assert request.headers["x-api-key"] == waha.api_key
    assert request.json == {"session": "default", "chatId": "5511987654321@c.us", "text": "Olá"}
    assert result.provider_message_id.startswith("4CC5")
    assert "_" not in result.provider_message_id  # the same form acks carry
    assert result.jid == "5511987654321@c.us"


async def test_send_prefers_the_known_chat_id(waha: FakeWaha, client: httpx.AsyncClient) -> None:
    await provider.send(client, session(waha), outbound(text="x", to_jid="551187654321@c.us"))
    assert waha.last().json["chatId"] == "551187654321@c.us"
    await provider.send(client, session(waha), outbound(text="x", to_jid="5511876@s.whatsapp.net"))
    assert waha.last().json["chatId"] == "5511876@c.us"
    await provider.send(client, session(waha), outbound(text="x", to_jid="12345@lid"))
    assert waha.last().json["chatId"] == "12345@lid"


MEDIA_CASES = [
    (
        outbound(
            MessageType.IMAGE,
            media_url="https://x/a.jpg",
            mimetype="image/jpeg",
            filename="a.jpg",
            caption="c",
        ),
        "/api/sendImage",
        {
            "file": {"mimetype": "image/jpeg", "url": "https://x/a.jpg", "filename": "a.jpg"},
            "caption": "c",
        },
    ),
    (
        outbound(
            MessageType.DOCUMENT,
            media_url="https://x/a.pdf",
            mimetype="application/pdf",
            filename="a.pdf",
        ),
        "/api/sendFile",
        {"file": {"mimetype": "application/pdf", "url": "https://x/a.pdf", "filename": "a.pdf"}},
    ),
    (
        outbound(MessageType.AUDIO, media_url="https://x/a.ogg"),
        "/api/sendVoice",
        {
            "file": {"mimetype": "audio/ogg; codecs=opus", "url": "https://x/a.ogg"},
            "convert": False,
        },
    ),
    (
        outbound(MessageType.AUDIO, media_url="https://x/a.mp3", mimetype="audio/mpeg"),
        "/api/sendVoice",
        {"file": {"mimetype": "audio/mpeg", "url": "https://x/a.mp3"}, "convert": True},
    ),
    (
        outbound(MessageType.VIDEO, media_url="https://x/v.mp4", caption="c"),
        "/api/sendVideo",
        {
            "file": {"mimetype": "video/mp4", "url": "https://x/v.mp4"},
            "caption": "c",
            "asNote": False,
            "convert": False,
        },
    ),
]


@pytest.mark.parametrize(("message", "path", "extra"), MEDIA_CASES)
async def test_send_media(
    waha: FakeWaha, client: httpx.AsyncClient, message: OutboundMessage, path: str, extra: Any
) -> None:
    await provider.send(client, session(waha), message)
    assert waha.last().path == path
    assert waha.last().json == {"session": "default", "chatId": "5511987654321@c.us", **extra}


async def test_send_errors(waha: FakeWaha, client: httpx.AsyncClient) -> None:
    waha.set_unknown_numbers({"5511900000000"})
    with pytest.raises(GatewayRejected) as rejected:
        await provider.send(client, session(waha), outbound(phone="5511900000000", text="x"))
    assert rejected.value.status_code == 400
    assert "not on WhatsApp" in (rejected.value.detail or "")
    waha.fail_next(1, status=503)
    with pytest.raises(GatewayUnavailable):
        await provider.send(client, session(waha), outbound(text="x"))
    waha.hang_next(1)
    with pytest.raises(GatewayUnavailable):
        await provider.send(
            client, session(waha, options={"timeout_secs": 0.2}), outbound(text="x")
        )
    wrong_key = SessionConfig(ProviderName.WAHA, "default", base_url=waha.base_url, api_key="bad")
    with pytest.raises(GatewayRejected) as unauthorized:
        await provider.send(client, wrong_key, outbound(text="x"))
    assert unauthorized.value.status_code == 401


async def test_check_number(waha: FakeWaha, client: httpx.AsyncClient) -> None:
    waha.set_unknown_numbers({"5511900000000"})
    assert await provider.check_number(client, session(waha), "5511987654321") == (
        "5511987654321@c.us"
    )
    request = waha.last()
    assert (request.method, request.path) == ("GET", "/api/contacts/check-exists")
    assert request.query == {"phone": "5511987654321", "session": "default"}
    assert await provider.check_number(client, session(waha), "5511900000000") is None


async def test_connect_new_session_returns_qr(waha: FakeWaha, client: httpx.AsyncClient) -> None:
    config = session(
        waha, name="loja", webhook_secret="k3y", options={"webhook_url": "https://atende/wh"}
    )
    result = await provider.connect(client, config)
    assert result == ConnectResult(SessionState.QR, qr=f"data:image/png;base64,{QR_PNG_BASE64}")
    create = waha.find("POST", "/api/sessions")[0]
    assert create.json == {
        "name": "loja",
        "start": True,
        "config": {
            "webhooks": [
                {
                    "url": "https://atende/wh",
                    "events": ["message", "message.any", "message.ack", "session.status"],
                    "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 10},
                    "hmac": {"key": "k3y"},
                }
            ]
        },
    }
    qr = waha.find("GET", "/api/loja/auth/qr")[0]
    assert qr.headers["accept"] == "application/json"


async def test_connect_existing_session(waha: FakeWaha, client: httpx.AsyncClient) -> None:
    assert await provider.connect(client, session(waha)) == ConnectResult(SessionState.CONNECTED)
    assert waha.find("POST", "/api/sessions/default/start")  # 422 "already exists" → start
    waha.sessions["default"] = "STOPPED"
    waha.start_status = "STARTING"
    assert await provider.connect(client, session(waha)) == ConnectResult(SessionState.CONNECTING)


async def test_status_and_disconnect(waha: FakeWaha, client: httpx.AsyncClient) -> None:
    assert await provider.status(client, session(waha)) == SessionState.CONNECTED
    assert await provider.status(client, session(waha, name="nope")) == SessionState.DISCONNECTED
    await provider.disconnect(client, session(waha))
    assert (waha.last().method, waha.last().path) == ("POST", "/api/sessions/default/logout")
    assert await provider.status(client, session(waha)) == SessionState.DISCONNECTED
    await provider.disconnect(client, session(waha, name="nope"))  # unknown: nothing to do


async def test_fetch_media(waha: FakeWaha, client: httpx.AsyncClient) -> None:
    waha.add_file("x.jpg", b"\xff\xd8jpeg", "image/jpeg")
    # WAHA often builds file URLs with its own `localhost` hostname: fetched from base_url.
    ref = MediaRef(url="http://localhost:3000/api/files/x.jpg")
    content = await provider.fetch_media(client, session(waha), ref)
    assert (await content.read(), content.mimetype) == (b"\xff\xd8jpeg", "image/jpeg")
    assert waha.last().path == "/api/files/x.jpg"
    assert waha.last().headers["x-api-key"] == waha.api_key
    with pytest.raises(GatewayRejected):
        await provider.fetch_media(client, session(waha), MediaRef(url=None))
