from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from atende.providers import detect_provider, get_provider
from atende.providers.base import (
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
from atende.providers.cloud import CloudProvider, signature, verify_handshake
from atende.types import MessageStatus, MessageType, ProviderName, SessionState
from tests.fakes.cloud import FakeCloud
from tests.fakes.server import serve_app
from tests.providers.conftest import Receiver

provider = CloudProvider()
builder = FakeCloud()
PNID = builder.phone_number_id


def session(fake: FakeCloud | None = None, **kw: Any) -> SessionConfig:
    options = {"timeout_secs": 2.0} | kw.pop("options", {})
    return SessionConfig(
        provider=ProviderName.CLOUD,
        name=PNID,
        base_url=fake.base_url if fake else None,
        api_key=fake.api_key if fake else "token",
        options=options,
        **kw,
    )


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    fake = FakeCloud()
    async with fake.running():
        yield fake


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


# -- parsing -------------------------------------------------------------------------------------


def test_parse_text_docs_example() -> None:
    payload = builder.inbound_text(
        "16505551234", "Does it come in another color?", msg_id="wamid.1"
    )
    assert only(provider.parse(payload)) == InboundMessage(
        session_name=PNID,
        provider_message_id="wamid.1",
        chat_jid="16505551234",
        phone="16505551234",
        from_me=False,
        message_type=MessageType.TEXT,
        text="Does it come in another color?",
        push_name="Sheena",
        timestamp=datetime.fromtimestamp(1749416383, tz=UTC),
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("image", MessageType.IMAGE),
        ("sticker", MessageType.IMAGE),
        ("video", MessageType.VIDEO),
        ("audio", MessageType.AUDIO),
        ("document", MessageType.DOCUMENT),
    ],
)
def test_parse_media(kind: str, expected: MessageType) -> None:
    payload = builder.inbound_media(
        "16505551234",
        kind,
        "MEDIA1",
        mime_type="application/pdf",
        caption="legenda",
        filename="a.pdf" if kind == "document" else None,
    )
    message = only(provider.parse(payload))
    assert message.message_type == expected
    assert message.text == "legenda"
    assert message.media == MediaRef(
        media_id="MEDIA1",
        mimetype="application/pdf",
        caption="legenda",
        filename="a.pdf" if kind == "document" else None,
    )


def test_parse_button_and_unsupported() -> None:
    payload = builder.inbound_text("1650", "x")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message |= {"type": "interactive", "interactive": {"button_reply": {"id": "b", "title": "Sim"}}}
    assert only(provider.parse(payload)).text == "Sim"
    message |= {"type": "reaction", "reaction": {"emoji": "👍"}}
    assert provider.parse(payload) == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("read", MessageStatus.READ),
        ("played", MessageStatus.READ),
        ("failed", MessageStatus.FAILED),
    ],
)
def test_parse_status(status: str, expected: MessageStatus) -> None:
    update = only(provider.parse(builder.ack("wamid.9", status, error=status == "failed")))
    assert isinstance(update, StatusUpdate)
    assert (update.session_name, update.provider_message_id, update.status) == (
        PNID,
        "wamid.9",
        expected,
    )
    assert update.timestamp == datetime.fromtimestamp(1749416400, tz=UTC)
    if status == "failed":
        assert update.error == (
            "Message undeliverable — Receiver is incapable of receiving this message (code 131026)"
        )
    else:
        assert update.error is None


def test_unknown_fields_and_statuses_are_ignored() -> None:
    assert provider.parse(builder.ack("wamid.9", "deleted")) == []
    account_update = builder.connection("ACCOUNT_UPDATE")
    assert provider.parse(account_update) == []
    assert provider.session_names(account_update) == []


def test_session_names_lists_every_phone_number_id() -> None:
    payload = builder.inbound_text("1650", "a")
    other = builder.ack("wamid.1", "read")
    other["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    payload["entry"].append(other["entry"][0])
    assert provider.session_names(payload) == [PNID, "999"]
    assert [item.session_name for item in provider.parse(payload)] == [PNID, "999"]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"object": "whatsapp_business_account"},
        {"object": "whatsapp_business_account", "entry": [{"changes": {}}]},
        {"entry": [{"changes": [{"field": "messages", "value": {"messages": []}}]}]},
        {"entry": [{"changes": [{"field": "messages", "value": "x"}]}]},
    ],
)
def test_malformed_payloads(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        provider.parse(payload)


@pytest.mark.parametrize("field", ["from", "id"])
def test_malformed_message(field: str) -> None:
    payload = builder.inbound_text("1650", "x")
    del payload["entry"][0]["changes"][0]["value"]["messages"][0][field]
    with pytest.raises(MalformedPayload):
        provider.parse(payload)


def test_matches_and_detection() -> None:
    payload = builder.inbound_text("1650", "x")
    assert provider.matches(payload)
    assert provider.matches({"entry": []})
    assert not provider.matches({"event": "message", "instance": "x"})
    assert detect_provider(payload) is get_provider(ProviderName.CLOUD)


# -- webhook auth --------------------------------------------------------------------------------


def test_signature_verification() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    secured = session(webhook_secret="app-secret")
    provider.verify(secured, body, {"X-Hub-Signature-256": signature("app-secret", body)})
    for headers in (
        {},
        {"X-Hub-Signature-256": signature("other", body)},
        {"X-Hub-Signature-256": "abc"},
    ):
        with pytest.raises(WebhookAuthError):
            provider.verify(secured, body, headers)
    with pytest.raises(WebhookAuthError):
        provider.verify(
            secured, body + b"\n", {"X-Hub-Signature-256": signature("app-secret", body)}
        )
    provider.verify(session(), body, {})


def test_verify_handshake() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert verify_handshake(params, "tok") == "1158201444"
    with pytest.raises(WebhookAuthError):
        verify_handshake(params | {"hub.verify_token": "nope"}, "tok")
    with pytest.raises(WebhookAuthError):
        verify_handshake(params | {"hub.mode": "unsubscribe"}, "tok")
    with pytest.raises(WebhookAuthError):
        verify_handshake(params, "")
    with pytest.raises(MalformedPayload):
        verify_handshake({"hub.mode": "subscribe", "hub.verify_token": "tok"}, "tok")


async def test_delivery_round_trip() -> None:
    fake = FakeCloud(app_secret="app-secret")
    receiver = Receiver(provider, session(webhook_secret="app-secret"), fail_first=1)
    async with serve_app(receiver.app()) as url:
        response = await fake.deliver(f"{url}/hook", fake.inbound_text("1650", "Oi"))
        assert (response.status_code, receiver.attempts) == (200, 2)
        assert only(receiver.items).text == "Oi"
        response = await FakeCloud(app_secret="wrong").deliver(f"{url}/hook", fake.ack("w", "read"))
        assert response.status_code == 401


# -- gateway calls -------------------------------------------------------------------------------


async def test_send_text(cloud: FakeCloud, client: httpx.AsyncClient) -> None:
    cloud.wa_ids["5511987654321"] = "551187654321"  # registered without the ninth digit
    message = OutboundMessage(None, "5511987654321", MessageType.TEXT, text="Olá")
    result = await provider.send(client, session(cloud), message)
    request = cloud.last()
    assert (request.method, request.path) == ("POST", f"/v21.0/{PNID}/messages")
    assert request.headers["authorization"] == f"Bearer {cloud.api_key}"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+5511987654321",
        "type": "text",
        "text": {"preview_url": False, "body": "Olá"},
    }
    assert result.provider_message_id.startswith("wamid.")
    assert result.jid == "551187654321"


async def test_send_uses_known_wa_id_and_api_version(
    cloud: FakeCloud, client: httpx.AsyncClient
) -> None:
    message = OutboundMessage("551187654321", "5511987654321", MessageType.TEXT, text="x")
    await provider.send(client, session(cloud, options={"api_version": "v19.0"}), message)
    assert cloud.last().path == f"/v19.0/{PNID}/messages"
    assert cloud.last().json["to"] == "551187654321"


@pytest.mark.parametrize(
    ("message", "node"),
    [
        (
            OutboundMessage(
                None, "55119", MessageType.IMAGE, media_url="https://x/a.jpg", caption="c"
            ),
            {"link": "https://x/a.jpg", "caption": "c"},
        ),
        (
            OutboundMessage(
                None,
                "55119",
                MessageType.DOCUMENT,
                media_url="https://x/a.pdf",
                filename="a.pdf",
                caption="c",
            ),
            {"link": "https://x/a.pdf", "caption": "c", "filename": "a.pdf"},
        ),
        (
            OutboundMessage(
                None, "55119", MessageType.AUDIO, media_url="https://x/a.ogg", caption="ignored"
            ),
            {"link": "https://x/a.ogg"},
        ),
        (
            OutboundMessage(None, "55119", MessageType.VIDEO, media_url="https://x/v.mp4"),
            {"link": "https://x/v.mp4"},
        ),
    ],
)
async def test_send_media(
    cloud: FakeCloud, client: httpx.AsyncClient, message: OutboundMessage, node: Any
) -> None:
    await provider.send(client, session(cloud), message)
    kind = str(message.message_type)
    assert cloud.last().json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+55119",
        "type": kind,
        kind: node,
    }


async def test_send_errors(cloud: FakeCloud, client: httpx.AsyncClient) -> None:
    message = OutboundMessage(None, "5511900000000", MessageType.TEXT, text="x")
    cloud.set_unknown_numbers({"5511900000000"})
    with pytest.raises(GatewayRejected) as rejected:
        await provider.send(client, session(cloud), message)
    assert "Recipient phone number not in allowed list" in (rejected.value.detail or "")
    cloud.fail_next(1, status=500)
    with pytest.raises(GatewayUnavailable):
        await provider.send(client, session(cloud), message)
    cloud.hang_next(1)
    with pytest.raises(GatewayUnavailable):
        await provider.send(client, session(cloud, options={"timeout_secs": 0.2}), message)
    bad = SessionConfig(ProviderName.CLOUD, PNID, base_url=cloud.base_url, api_key="EAAG-secret")
    with pytest.raises(GatewayRejected) as unauthorized:
        await provider.send(client, bad, message)
    assert unauthorized.value.status_code == 401
    assert "Invalid OAuth access token" in (unauthorized.value.detail or "")
    assert "EAAG-secret" not in str(unauthorized.value)


async def test_check_number_makes_no_call(cloud: FakeCloud, client: httpx.AsyncClient) -> None:
    assert await provider.check_number(client, session(cloud), "5511987654321") == "5511987654321"
    assert cloud.requests == []


async def test_connect_status_disconnect(cloud: FakeCloud, client: httpx.AsyncClient) -> None:
    assert await provider.connect(client, session(cloud)) == ConnectResult(SessionState.CONNECTED)
    assert (cloud.last().method, cloud.last().path) == ("GET", f"/v21.0/{PNID}")
    assert await provider.status(client, session(cloud)) == SessionState.CONNECTED
    other = SessionConfig(ProviderName.CLOUD, "42", base_url=cloud.base_url, api_key=cloud.api_key)
    with pytest.raises(GatewayRejected):
        await provider.status(client, other)
    before = len(cloud.requests)
    await provider.disconnect(client, session(cloud))
    assert len(cloud.requests) == before


async def test_fetch_media(cloud: FakeCloud, client: httpx.AsyncClient) -> None:
    cloud.add_media("MEDIA1", b"OggS-voice", "audio/ogg")
    content = await provider.fetch_media(client, session(cloud), MediaRef(media_id="MEDIA1"))
    assert (await content.read(), content.mimetype) == (b"OggS-voice", "audio/ogg")
    lookup, download = cloud.requests
    assert (lookup.path, download.path) == ("/v21.0/MEDIA1", "/media-download/MEDIA1")
    assert download.headers["authorization"] == f"Bearer {cloud.api_key}"
    with pytest.raises(GatewayRejected):
        await provider.fetch_media(client, session(cloud), MediaRef(media_id="missing"))


def test_default_graph_url() -> None:
    from atende.providers.cloud_api import graph_base

    assert graph_base(session()) == "https://graph.facebook.com/v21.0"
    custom = session(options={"graph_url": "https://graph.example/", "api_version": "v20.0"})
    assert graph_base(custom) == "https://graph.example/v20.0"
