"""Evolution API (v1.8 and v2.x): webhook parsing and auth; gateway calls live in evolution_api.

Facts and sources: PROVIDERS.md §1. Envelope `{event, instance, data}`; no signature, so a session
with a secret expects it back as a custom `apikey` header (v2 `webhook.headers`), an
`Authorization: Bearer`, or the body's `apikey` field (the instance token, when exposed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from atende.providers import evolution_api
from atende.providers.base import (
    ConnectionUpdate,
    ConnectResult,
    InboundMessage,
    MalformedPayload,
    MediaContent,
    MediaRef,
    OutboundMessage,
    SendResult,
    SessionConfig,
    StatusUpdate,
    WebhookAuthError,
    WebhookItem,
)
from atende.providers.common import (
    GROUP_SUFFIX,
    header,
    obj,
    opt_str,
    phone_of,
    req_str,
    secret_equals,
    to_datetime,
)
from atende.providers.http import to_data_url
from atende.types import MessageStatus, MessageType, ProviderName, SessionState

# Baileys numeric status → renderStatus string (src/utils/renderStatus.ts).
_NUMERIC_STATUS = {
    0: "ERROR",
    1: "PENDING",
    2: "SERVER_ACK",
    3: "DELIVERY_ACK",
    4: "READ",
    5: "PLAYED",
}
# PENDING and DELETED say nothing about delivery: they are not in this map and are ignored.
_STATUS = {
    "SERVER_ACK": MessageStatus.SENT,
    "DELIVERY_ACK": MessageStatus.DELIVERED,
    "READ": MessageStatus.READ,
    "PLAYED": MessageStatus.READ,
    "ERROR": MessageStatus.FAILED,
}
_STATE = {
    "open": SessionState.CONNECTED,
    "connecting": SessionState.CONNECTING,
    "close": SessionState.DISCONNECTED,
    "refused": SessionState.DISCONNECTED,
}
# message node → type; the node carries url/mimetype/caption/fileName.
_MEDIA_NODES = (
    ("imageMessage", MessageType.IMAGE),
    ("videoMessage", MessageType.VIDEO),
    ("ptvMessage", MessageType.VIDEO),
    ("audioMessage", MessageType.AUDIO),
    ("documentMessage", MessageType.DOCUMENT),
    ("stickerMessage", MessageType.IMAGE),
)


def normalise_event(event: str) -> str:
    """`MESSAGES_UPSERT` (subscription spelling) and `messages.upsert` (webhook spelling) agree."""
    return event.strip().lower().replace("_", ".")


class EvolutionProvider:
    name = ProviderName.EVOLUTION

    def matches(self, payload: Any) -> bool:
        return isinstance(payload, dict) and "event" in payload and "instance" in payload

    def session_names(self, payload: Any) -> list[str]:
        return [req_str(obj(payload, "body"), "instance")]

    def verify(self, session: SessionConfig, raw_body: bytes, headers: Mapping[str, str]) -> None:
        secret = session.webhook_secret
        if not secret:
            return
        bearer = header(headers, "authorization") or ""
        candidates = [
            header(headers, "apikey"),
            bearer[len("Bearer ") :] if bearer.startswith("Bearer ") else None,
            _body_apikey(raw_body),
        ]
        # Evaluate every candidate (no short-circuit) so timing does not reveal which one matched.
        matched = [secret_equals(candidate, secret) for candidate in candidates]
        if not any(matched):
            raise WebhookAuthError("missing or wrong Evolution webhook api key")

    def parse(self, payload: Any) -> list[WebhookItem]:
        body = obj(payload, "body")
        event = normalise_event(req_str(body, "event"))
        instance = req_str(body, "instance")
        handler = _HANDLERS.get(event)
        if handler is None:
            return []
        if "data" not in body:
            raise MalformedPayload(f"{event} has no data")
        return handler(instance, body["data"])

    async def send(
        self, client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
    ) -> SendResult:
        return await evolution_api.send(client, session, message)

    async def check_number(
        self, client: httpx.AsyncClient, session: SessionConfig, phone: str
    ) -> str | None:
        return await evolution_api.check_number(client, session, phone)

    async def connect(self, client: httpx.AsyncClient, session: SessionConfig) -> ConnectResult:
        return await evolution_api.connect(client, session)

    async def status(self, client: httpx.AsyncClient, session: SessionConfig) -> SessionState:
        return await evolution_api.status(client, session)

    async def disconnect(self, client: httpx.AsyncClient, session: SessionConfig) -> None:
        await evolution_api.disconnect(client, session)

    async def fetch_media(
        self, client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
    ) -> MediaContent:
        return await evolution_api.fetch_media(client, session, media)


def _body_apikey(raw_body: bytes) -> str | None:
    try:
        body = json.loads(raw_body)
    except ValueError:
        return None
    return opt_str(body, "apikey") if isinstance(body, dict) else None


def _as_list(data: Any, what: str) -> list[dict[str, Any]]:
    """Evolution sends one object; some versions and batch updates send a list."""
    items = data if isinstance(data, list) else [data]
    return [obj(item, what) for item in items]


def _parse_upsert(instance: str, data: Any) -> list[WebhookItem]:
    return [m for d in _as_list(data, "data") if (m := _message(instance, d, None)) is not None]


def _parse_send_message(instance: str, data: Any) -> list[WebhookItem]:
    # Messages sent through the API echo here; they are ours whatever key.fromMe says.
    return [m for d in _as_list(data, "data") if (m := _message(instance, d, True)) is not None]


def _message(instance: str, data: dict[str, Any], from_me: bool | None) -> InboundMessage | None:
    key = obj(data.get("key"), "data.key")
    chat_jid = req_str(key, "remoteJid", "data.key.remoteJid")
    message_id = req_str(key, "id", "data.key.id")
    node = data.get("message")
    content = _content(node, message_id) if isinstance(node, dict) else None
    if content is None:
        return None  # reactions, protocol messages, polls...: nothing for the inbox
    message_type, text, media = content
    mine = bool(key.get("fromMe")) if from_me is None else from_me
    is_group = chat_jid.endswith(GROUP_SUFFIX)
    participant = opt_str(key, "participant") or opt_str(data, "participant")
    if is_group:
        phone = phone_of(participant, opt_str(key, "participantAlt"))
    else:
        phone = phone_of(chat_jid, opt_str(key, "remoteJidAlt"))
    return InboundMessage(
        session_name=instance,
        provider_message_id=message_id,
        chat_jid=chat_jid,
        phone=phone,
        from_me=mine,
        message_type=message_type,
        text=text,
        media=media,
        # When fromMe, pushName is our own name (or the filler "Você"), not the contact's.
        push_name=None if mine else opt_str(data, "pushName"),
        timestamp=to_datetime(data.get("messageTimestamp")),
        is_group=is_group,
        participant=participant if is_group else None,
    )


def _content(
    node: dict[str, Any], message_id: str
) -> tuple[MessageType, str | None, MediaRef | None] | None:
    if isinstance(node.get("conversation"), str):
        return MessageType.TEXT, node["conversation"], None
    extended = node.get("extendedTextMessage")
    if isinstance(extended, dict) and isinstance(extended.get("text"), str):
        return MessageType.TEXT, extended["text"], None
    wrapped = node.get("documentWithCaptionMessage")  # EVO1 / pre-2.2 wrapper
    if isinstance(wrapped, dict) and isinstance(wrapped.get("message"), dict):
        node = {**node, **wrapped["message"]}
    for name, message_type in _MEDIA_NODES:
        media = node.get(name)
        if isinstance(media, dict):
            ref = _media_ref(node, media, message_id)
            return message_type, ref.caption, ref
    return None


def _media_ref(node: dict[str, Any], media: dict[str, Any], message_id: str) -> MediaRef:
    mimetype = opt_str(media, "mimetype")
    # The node's own `url` is WhatsApp's encrypted CDN blob (useless without mediaKey), so the
    # downloadable URL is the S3 `mediaUrl` or the inline `base64`; otherwise fetch_media asks
    # Evolution to decrypt it by message id.
    url = opt_str(node, "mediaUrl")
    inline = opt_str(node, "base64")
    if url is None and inline is not None:
        url = to_data_url(inline, mimetype or "application/octet-stream")
    return MediaRef(
        url=url,
        media_id=message_id,
        mimetype=mimetype,
        filename=opt_str(media, "fileName"),
        caption=opt_str(media, "caption"),
    )


def _parse_update(instance: str, data: Any) -> list[WebhookItem]:
    items: list[WebhookItem] = []
    for entry in _as_list(data, "data"):
        if entry.get("fromMe") is False:
            continue  # read receipts of the customer's messages: not a delivery status of ours
        message_id = opt_str(entry, "keyId") or opt_str(entry, "id")  # EVO2 keyId, EVO1 key.id
        if message_id is None:
            raise MalformedPayload("messages.update needs data.keyId (v2) or data.id (v1)")
        status = _status(entry.get("status"))
        if status is not None:
            timestamp = to_datetime(entry.get("datetime"))
            items.append(StatusUpdate(instance, message_id, status, timestamp=timestamp))
    return items


def _status(value: Any) -> MessageStatus | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = _NUMERIC_STATUS.get(value)
    if isinstance(value, str) and value.isdigit():
        value = _NUMERIC_STATUS.get(int(value))
    return _STATUS.get(value) if isinstance(value, str) else None


def _parse_connection(instance: str, data: Any) -> list[WebhookItem]:
    body = obj(data, "data")
    raw_state = req_str(body, "state", "data.state")
    state = _STATE.get(raw_state)
    if state is None:
        return []
    error = None
    if raw_state == "refused":
        error = f"connection refused (QR code limit reached, reason {body.get('statusReason')})"
    wuid = opt_str(body, "wuid")
    return [ConnectionUpdate(instance, state, error=error, phone=phone_of(wuid))]


def _parse_qrcode(instance: str, data: Any) -> list[WebhookItem]:
    qrcode = obj(obj(data, "data").get("qrcode"), "data.qrcode")
    return [ConnectionUpdate(instance, SessionState.QR, qr=opt_str(qrcode, "base64"))]


def _parse_instance_status(instance: str, data: Any) -> list[WebhookItem]:
    # Emitted on logout / forbidden: {instance, status: "closed", disconnectionReasonCode...}.
    body = obj(data, "data")
    if body.get("status") != "closed":
        return []
    reason = body.get("disconnectionReasonCode")
    error = f"instance closed (reason {reason})" if reason is not None else "instance closed"
    return [ConnectionUpdate(instance, SessionState.DISCONNECTED, error=error)]


_HANDLERS = {
    "messages.upsert": _parse_upsert,
    "send.message": _parse_send_message,
    "messages.update": _parse_update,
    "connection.update": _parse_connection,
    "qrcode.updated": _parse_qrcode,
    "status.instance": _parse_instance_status,
}

__all__ = ["EvolutionProvider", "normalise_event"]
