from __future__ import annotations

import base64
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
from atende.providers.evolution import EvolutionProvider
from atende.types import MessageStatus, MessageType, ProviderName, SessionState
from tests.fakes.evolution import QR_DATA_URL, FakeEvolution
from tests.fakes.server import serve_app
from tests.providers.conftest import Receiver

provider = EvolutionProvider()
fake_builder = FakeEvolution()  # payload builders only; never served
QR_RESULT = ConnectResult(SessionState.QR, qr=QR_DATA_URL)


def session(fake: FakeEvolution | None = None, **kw: Any) -> SessionConfig:
    options = {"timeout_secs": 2.0} | kw.pop("options", {})
    return SessionConfig(
        provider=ProviderName.EVOLUTION,
        name=kw.pop("name", "loja-01"),
        base_url=fake.base_url if fake else "http://evo.invalid",
        api_key=fake.api_key if fake else "k",
        options=options,
        **kw,
    )


@pytest.fixture
async def evo() -> AsyncIterator[FakeEvolution]:
    fake = FakeEvolution(instances={"loja-01": "open"})
    async with fake.running():
        yield fake


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_parse_text(version: Any) -> None:
    payload = fake_builder.inbound_text("5511987654321", "Oi", msg_id="ABC", version=version)
    message = only(provider.parse(payload))
    assert message == InboundMessage(
        session_name="loja-01",
        provider_message_id="ABC",
        chat_jid="5511987654321@s.whatsapp.net",
        phone="5511987654321",
        from_me=False,
        message_type=MessageType.TEXT,
        text="Oi",
        push_name="Maria",
        timestamp=datetime.fromtimestamp(1729500000, tz=UTC),
    )


def test_parse_from_me_and_send_message() -> None:
    payload = fake_builder.inbound_text("5511987654321", "from phone", from_me=True)
    message = only(provider.parse(payload))
    assert message.from_me is True
    assert message.push_name is None  # pushName is our own name ("Você") on fromMe
    echoed = fake_builder.inbound_text("5511987654321", "via api")
    echoed["event"] = "send.message"
    assert only(provider.parse(echoed)).from_me is True


def test_event_names_are_normalised() -> None:
    payload = fake_builder.inbound_text("5511987654321", "Oi")
    payload["event"] = "MESSAGES_UPSERT"
    assert only(provider.parse(payload)).text == "Oi"


@pytest.mark.parametrize(
    ("kind", "mimetype", "expected"),
    [
        ("image", "image/jpeg", MessageType.IMAGE),
        ("video", "video/mp4", MessageType.VIDEO),
        ("audio", "audio/ogg; codecs=opus", MessageType.AUDIO),
        ("document", "application/pdf", MessageType.DOCUMENT),
    ],
)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_parse_media(kind: Any, mimetype: str, expected: MessageType, version: Any) -> None:
    payload = fake_builder.inbound_media(
        "5511987654321",
        kind,
        msg_id="MID",
        caption="legenda" if kind != "audio" else None,
        mimetype=mimetype,
        file_name="a.pdf" if kind == "document" else None,
        version=version,
    )
    message = only(provider.parse(payload))
    assert message.message_type == expected
    assert message.media.media_id == "MID"
    assert message.media.mimetype == mimetype
    assert message.media.url is None  # the encrypted CDN url is not a download URL
    if kind != "audio":
        assert message.text == message.media.caption == "legenda"
    if kind == "document":
        assert message.media.filename == "a.pdf"


def test_parse_media_inline_base64_and_s3_url() -> None:
    payload = fake_builder.inbound_media("55119", "image", base64_data="aGVsbG8=")
    assert only(provider.parse(payload)).media.url == "data:image/jpeg;base64,aGVsbG8="
    payload = fake_builder.inbound_media("55119", "image", media_url="https://s3.example/x.jpg")
    assert only(provider.parse(payload)).media.url == "https://s3.example/x.jpg"


def test_parse_group_message_with_lid_participant() -> None:
    payload = fake_builder.inbound_text("x", "no grupo", remote_jid="120363@g.us")
    payload["data"]["key"] |= {
        "participant": "999@lid",
        "participantAlt": "5511912345678@s.whatsapp.net",
    }
    message = only(provider.parse(payload))
    assert message.is_group and message.chat_jid == "120363@g.us"
    assert message.participant == "999@lid"
    assert message.phone == "5511912345678"


def test_parse_lid_chat() -> None:
    with_alt = fake_builder.inbound_text(
        "x", "Oi", remote_jid="12345@lid", remote_jid_alt="5511987654321@s.whatsapp.net"
    )
    message = only(provider.parse(with_alt))
    assert message.chat_jid == "12345@lid"
    assert message.phone == "5511987654321"
    without_alt = fake_builder.inbound_text("x", "Oi", remote_jid="12345@lid")
    assert only(provider.parse(without_alt)).phone is None


def test_unsupported_message_kinds_are_skipped() -> None:
    payload = fake_builder.inbound_text("5511987654321", "x")
    payload["data"]["message"] = {"reactionMessage": {"text": "👍"}}
    assert provider.parse(payload) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("SERVER_ACK", MessageStatus.SENT),
        ("DELIVERY_ACK", MessageStatus.DELIVERED),
        ("READ", MessageStatus.READ),
        ("PLAYED", MessageStatus.READ),
        ("ERROR", MessageStatus.FAILED),
        (0, MessageStatus.FAILED),
        (2, MessageStatus.SENT),
        (3, MessageStatus.DELIVERED),
        (4, MessageStatus.READ),
        (5, MessageStatus.READ),
    ],
)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_parse_status(raw: Any, expected: MessageStatus, version: Any) -> None:
    update = only(provider.parse(fake_builder.ack("3EB0X", raw, version=version)))
    assert isinstance(update, StatusUpdate)
    assert (update.session_name, update.provider_message_id, update.status) == (
        "loja-01",
        "3EB0X",
        expected,
    )


@pytest.mark.parametrize("raw", ["PENDING", "DELETED", 1, "SOMETHING"])
def test_uninformative_statuses_are_ignored(raw: Any) -> None:
    assert provider.parse(fake_builder.ack("3EB0X", raw)) == []


def test_status_list_and_inbound_receipts() -> None:
    payload = fake_builder.ack("A", "READ")
    second = dict(payload["data"], keyId="B", status="DELIVERY_ACK")
    theirs = dict(payload["data"], keyId="C", fromMe=False)
    payload["data"] = [payload["data"], second, theirs]
    items = provider.parse(payload)
    updates = [u for u in items if isinstance(u, StatusUpdate)]
    assert len(updates) == len(items)
    assert [(u.provider_message_id, u.status) for u in updates] == [
        ("A", MessageStatus.READ),
        ("B", MessageStatus.DELIVERED),
    ]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("open", SessionState.CONNECTED),
        ("connecting", SessionState.CONNECTING),
        ("close", SessionState.DISCONNECTED),
        ("refused", SessionState.DISCONNECTED),
    ],
)
def test_parse_connection(state: str, expected: SessionState) -> None:
    update = only(provider.parse(fake_builder.connection(state)))
    assert isinstance(update, ConnectionUpdate)
    assert update.state == expected
    assert update.phone == "5511999990000"
    assert (update.error is not None) == (state == "refused")


def test_parse_qrcode() -> None:
    payload = fake_builder.qr()
    payload["event"] = "QRCODE_UPDATED"
    assert only(provider.parse(payload)) == ConnectionUpdate(
        "loja-01", SessionState.QR, qr=QR_DATA_URL
    )


def test_parse_instance_closed() -> None:
    payload = fake_builder.envelope("STATUS_INSTANCE", {"instance": "loja-01", "status": "closed"})
    update = only(provider.parse(payload))
    assert (update.state, update.error) == (SessionState.DISCONNECTED, "instance closed")


def test_unknown_events_are_ignored() -> None:
    payload = fake_builder.envelope("presence.update", {"id": "x"})
    assert provider.parse(payload) == []


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"event": "messages.upsert"},
        {"instance": "loja-01", "data": {}},
        {"event": "messages.upsert", "instance": "loja-01"},
        {"event": "messages.upsert", "instance": "loja-01", "data": {"message": {}}},
        {"event": "messages.upsert", "instance": "loja-01", "data": {"key": {"remoteJid": "1@s"}}},
        {"event": "messages.update", "instance": "loja-01", "data": {"status": "READ"}},
        {"event": "connection.update", "instance": "loja-01", "data": {"wuid": "x"}},
        {"event": "qrcode.updated", "instance": "loja-01", "data": {}},
        {"event": "messages.upsert", "instance": "loja-01", "data": "nope"},
    ],
)
def test_malformed_payloads(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        provider.parse(payload)


def test_matches_session_names_and_detection() -> None:
    payload = fake_builder.inbound_text("5511987654321", "Oi")
    assert provider.matches(payload)
    assert not provider.matches({"event": "message", "session": "default", "payload": {}})
    assert provider.session_names(payload) == ["loja-01"]
    assert detect_provider(payload) is get_provider(ProviderName.EVOLUTION)
    with pytest.raises(MalformedPayload):
        provider.session_names({"event": "x"})


# -- webhook auth --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "ok"),
    [
        ({"apikey": "s3cret"}, b"{}", True),
        ({"Authorization": "Bearer s3cret"}, b"{}", True),
        ({}, b'{"apikey": "s3cret"}', True),
        ({"apikey": "wrong"}, b"{}", False),
        ({"Authorization": "s3cret"}, b"{}", False),
        ({}, b'{"apikey": null}', False),
        ({}, b"not json", False),
    ],
)
def test_verify(headers: dict[str, str], body: bytes, ok: bool) -> None:
    secured = session(webhook_secret="s3cret")
    if ok:
        provider.verify(secured, body, headers)
    else:
        with pytest.raises(WebhookAuthError) as caught:
            provider.verify(secured, body, headers)
        assert "s3cret" not in str(caught.value)


def test_verify_without_secret_accepts_anything() -> None:
    provider.verify(session(), b"{}", {})


async def test_delivery_round_trip_with_retries() -> None:
    fake = FakeEvolution(webhook_key="s3cret")
    receiver = Receiver(provider, session(webhook_secret="s3cret"), fail_first=2)
    async with serve_app(receiver.app()) as url:
        response = await fake.deliver(f"{url}/hook", fake.inbound_text("5511987654321", "Oi"))
        assert response.status_code == 200
        assert receiver.attempts == 3
        assert only(receiver.items).text == "Oi"
        # A 401 is final for Evolution: no retry.
        receiver.attempts = 0
        response = await FakeEvolution(webhook_key="wrong").deliver(f"{url}/hook", fake.qr())
        assert (response.status_code, receiver.attempts) == (401, 1)


# -- gateway calls -------------------------------------------------------------------------------


def text_to(phone: str = "5511987654321", to_jid: str | None = None) -> OutboundMessage:
    return OutboundMessage(to_jid=to_jid, phone=phone, message_type=MessageType.TEXT, text="Olá")


@pytest.mark.parametrize(
    ("version", "body"),
    [
        ("v2", {"number": "5511987654321", "text": "Olá"}),
        ("v1", {"number": "5511987654321", "textMessage": {"text": "Olá"}}),
    ],
)
async def test_send_text(
    evo: FakeEvolution, client: httpx.AsyncClient, version: str, body: dict[str, Any]
) -> None:
    result = await provider.send(
        client, session(evo, options={"evolution_version": version}), text_to()
    )
    request = evo.last()
    assert (request.method, request.path, request.json) == (
        "POST",
        "/message/sendText/loja-01",
        body,
    )
    assert request.headers["apikey"] == evo.api_key
    assert result.provider_message_id.startswith("3EB0")
    assert result.jid == "5511987654321@s.whatsapp.net"


@pytest.mark.parametrize(
    ("to_jid", "number"),
    [
        ("5511987654321:3@s.whatsapp.net", "5511987654321"),
        ("551187654321@s.whatsapp.net", "551187654321"),
        ("12345@lid", "5511987654321"),
        ("120363@g.us", "120363@g.us"),
    ],
)
async def test_send_number_from_jid(
    evo: FakeEvolution, client: httpx.AsyncClient, to_jid: str, number: str
) -> None:
    await provider.send(client, session(evo), text_to(to_jid=to_jid))
    assert evo.last().json["number"] == number


@pytest.mark.parametrize(
    ("version", "message", "path", "body"),
    [
        (
            "v2",
            OutboundMessage(
                None,
                "551199",
                MessageType.IMAGE,
                media_url="https://x/a.jpg",
                mimetype="image/jpeg",
                caption="c",
            ),
            "/message/sendMedia/loja-01",
            {
                "number": "551199",
                "mediatype": "image",
                "mimetype": "image/jpeg",
                "media": "https://x/a.jpg",
                "caption": "c",
            },
        ),
        (
            "v2",
            OutboundMessage(
                None, "551199", MessageType.DOCUMENT, media_url="https://x/a.pdf", filename="a.pdf"
            ),
            "/message/sendMedia/loja-01",
            {
                "number": "551199",
                "mediatype": "document",
                "media": "https://x/a.pdf",
                "fileName": "a.pdf",
            },
        ),
        (
            "v1",
            OutboundMessage(
                None,
                "551199",
                MessageType.VIDEO,
                media_url="https://x/v.mp4",
                mimetype="video/mp4",
                caption="c",
            ),
            "/message/sendMedia/loja-01",
            {
                "number": "551199",
                "mediaMessage": {"mediatype": "video", "media": "https://x/v.mp4", "caption": "c"},
            },
        ),
        (
            "v2",
            OutboundMessage(None, "551199", MessageType.AUDIO, media_url="https://x/a.ogg"),
            "/message/sendWhatsAppAudio/loja-01",
            {"number": "551199", "audio": "https://x/a.ogg"},
        ),
        (
            "v1",
            OutboundMessage(None, "551199", MessageType.AUDIO, media_url="https://x/a.ogg"),
            "/message/sendWhatsAppAudio/loja-01",
            {"number": "551199", "audioMessage": {"audio": "https://x/a.ogg"}},
        ),
    ],
)
async def test_send_media(
    evo: FakeEvolution,
    client: httpx.AsyncClient,
    version: str,
    message: OutboundMessage,
    path: str,
    body: dict[str, Any],
) -> None:
    result = await provider.send(
        client, session(evo, options={"evolution_version": version}), message
    )
    assert (evo.last().path, evo.last().json) == (path, body)
    assert result.provider_message_id


async def test_send_media_without_url_is_rejected(client: httpx.AsyncClient) -> None:
    message = OutboundMessage(None, "551199", MessageType.IMAGE)
    with pytest.raises(GatewayRejected):
        await provider.send(client, session(), message)


async def test_send_to_number_not_on_whatsapp(
    evo: FakeEvolution, client: httpx.AsyncClient
) -> None:
    evo.set_unknown_numbers({"5511900000000"})
    with pytest.raises(GatewayRejected) as caught:
        await provider.send(client, session(evo), text_to("5511900000000"))
    assert caught.value.status_code == 400
    assert "not on WhatsApp: 5511900000000" in (caught.value.detail or "")


async def test_errors_are_translated(evo: FakeEvolution, client: httpx.AsyncClient) -> None:
    evo.fail_next(1, status=502)
    with pytest.raises(GatewayUnavailable):
        await provider.send(client, session(evo), text_to())
    evo.hang_next(1)
    with pytest.raises(GatewayUnavailable) as caught:
        await provider.send(client, session(evo, options={"timeout_secs": 0.2}), text_to())
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    evo.fail_next(
        1,
        status=400,
        body={
            "status": 400,
            "error": "Bad Request",
            "response": {"message": ["number is required"]},
        },
    )
    with pytest.raises(GatewayRejected) as rejected:
        await provider.send(client, session(evo), text_to())
    assert "number is required" in (rejected.value.detail or "")


async def test_bad_api_key_is_rejected_without_leaking_it(
    evo: FakeEvolution, client: httpx.AsyncClient
) -> None:
    bad = SessionConfig(
        ProviderName.EVOLUTION, "loja-01", base_url=evo.base_url, api_key="leaky-key"
    )
    with pytest.raises(GatewayRejected) as caught:
        await provider.send(client, bad, text_to())
    assert caught.value.status_code == 401
    assert "leaky-key" not in str(caught.value)


async def test_unreachable_gateway(client: httpx.AsyncClient) -> None:
    async with serve_app(Receiver(provider, session()).app()) as url:
        pass  # the port is now closed
    down = SessionConfig(ProviderName.EVOLUTION, "loja-01", base_url=url, api_key="k")
    with pytest.raises(GatewayUnavailable):
        await provider.status(client, down)


async def test_check_number(evo: FakeEvolution, client: httpx.AsyncClient) -> None:
    evo.set_unknown_numbers({"5511900000000"})
    assert await provider.check_number(client, session(evo), "5511987654321") == (
        "5511987654321@s.whatsapp.net"
    )
    assert evo.last().path == "/chat/whatsappNumbers/loja-01"
    assert evo.last().json == {"numbers": ["5511987654321"]}
    assert await provider.check_number(client, session(evo), "5511900000000") is None


async def test_connect_creates_missing_instance(
    evo: FakeEvolution, client: httpx.AsyncClient
) -> None:
    config = session(
        evo, name="nova", webhook_secret="s3cret", options={"webhook_url": "https://atende/wh"}
    )
    result = await provider.connect(client, config)
    assert result == QR_RESULT
    create = evo.find("POST", "/instance/create")[0]
    assert create.json == {
        "instanceName": "nova",
        "integration": "WHATSAPP-BAILEYS",
        "qrcode": True,
        "webhook": {
            "url": "https://atende/wh",
            "byEvents": False,
            "base64": False,
            "events": [
                "MESSAGES_UPSERT",
                "MESSAGES_UPDATE",
                "CONNECTION_UPDATE",
                "QRCODE_UPDATED",
                "SEND_MESSAGE",
            ],
            "headers": {"apikey": "s3cret"},
        },
    }
    assert evo.instances["nova"] == "connecting"


async def test_connect_existing_instances(evo: FakeEvolution, client: httpx.AsyncClient) -> None:
    assert (await provider.connect(client, session(evo))).state == SessionState.CONNECTED
    evo.instances["loja-01"] = "close"
    assert await provider.connect(client, session(evo)) == QR_RESULT
    assert evo.last().path == "/instance/connect/loja-01"
    assert not evo.find("POST", "/instance/create")


async def test_status_and_disconnect(evo: FakeEvolution, client: httpx.AsyncClient) -> None:
    assert await provider.status(client, session(evo)) == SessionState.CONNECTED
    assert await provider.status(client, session(evo, name="missing")) == SessionState.DISCONNECTED
    await provider.disconnect(client, session(evo))
    assert (evo.last().method, evo.last().path) == ("DELETE", "/instance/logout/loja-01")
    assert await provider.status(client, session(evo)) == SessionState.DISCONNECTED
    await provider.disconnect(client, session(evo))  # already closed: no error


async def test_fetch_media(evo: FakeEvolution, client: httpx.AsyncClient) -> None:
    inline = MediaRef(url="data:image/png;base64," + base64.b64encode(b"png!").decode())
    assert await (await provider.fetch_media(client, session(evo), inline)).read() == b"png!"
    assert not evo.requests
    evo.add_media("MID", b"%PDF-1.4", "application/pdf")
    content = await provider.fetch_media(client, session(evo), MediaRef(media_id="MID"))
    assert (await content.read(), content.mimetype) == (b"%PDF-1.4", "application/pdf")
    assert evo.last().path == "/chat/getBase64FromMediaMessage/loja-01"
    assert evo.last().json == {"message": {"key": {"id": "MID"}}, "convertToMp4": False}
    with pytest.raises(GatewayRejected):
        await provider.fetch_media(client, session(evo), MediaRef(media_id="nope"))
