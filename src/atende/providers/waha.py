"""WAHA (WhatsApp HTTP API): webhook parsing and HMAC check; gateway calls live in waha_api.

Facts and sources: PROVIDERS.md §2. Envelope `{event, session, payload, me?, engine?, ...}`.
Message ids are normalised to WhatsApp's own short id (see `short_id`) because engines disagree:
webhooks carry `true_<chat>_<id>`, while a NOWEB send answers with the bare `key.id`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import httpx

from atende.providers import waha_api
from atende.providers.base import (
    ConnectionUpdate,
    ConnectResult,
    InboundMessage,
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
    sub,
    to_datetime,
)
from atende.providers.waha_api import SESSION_STATE, short_id
from atende.types import MessageStatus, MessageType, ProviderName, SessionState

_ACK = {
    -1: MessageStatus.FAILED,  # ERROR
    1: MessageStatus.SENT,  # SERVER
    2: MessageStatus.DELIVERED,  # DEVICE
    3: MessageStatus.READ,  # READ
    4: MessageStatus.READ,  # PLAYED
}  # 0 PENDING says nothing new and is ignored
_ACK_NAMES = {"ERROR": -1, "PENDING": 0, "SERVER": 1, "DEVICE": 2, "READ": 3, "PLAYED": 4}
_TYPE_HINTS = {
    "chat": MessageType.TEXT,
    "text": MessageType.TEXT,
    "image": MessageType.IMAGE,
    "sticker": MessageType.IMAGE,
    "video": MessageType.VIDEO,
    "ptt": MessageType.AUDIO,
    "audio": MessageType.AUDIO,
    "voice": MessageType.AUDIO,
    "document": MessageType.DOCUMENT,
}
_MIME_PREFIXES = (
    ("image/", MessageType.IMAGE),
    ("video/", MessageType.VIDEO),
    ("audio/", MessageType.AUDIO),
)


class WahaProvider:
    name = ProviderName.WAHA

    def matches(self, payload: Any) -> bool:
        return isinstance(payload, dict) and all(
            k in payload for k in ("event", "session", "payload")
        )

    def session_names(self, payload: Any) -> list[str]:
        return [req_str(obj(payload, "body"), "session")]

    def verify(self, session: SessionConfig, raw_body: bytes, headers: Mapping[str, str]) -> None:
        secret = session.webhook_secret
        if not secret:
            return
        algorithm = (header(headers, "x-webhook-hmac-algorithm") or "sha512").lower()
        if algorithm != "sha512":
            raise WebhookAuthError(f"unsupported WAHA HMAC algorithm {algorithm!r}")
        expected = hmac_sha512(secret, raw_body)
        given = (header(headers, "x-webhook-hmac") or "").lower()
        if not secret_equals(given, expected):
            raise WebhookAuthError("missing or wrong X-Webhook-Hmac")

    def parse(self, payload: Any) -> list[WebhookItem]:
        body = obj(payload, "body")
        event = req_str(body, "event")
        session = req_str(body, "session")
        if event in ("message", "message.any"):
            item = _message(session, obj(body.get("payload"), "payload"))
            return [item] if item is not None else []
        if event == "message.ack":
            return _ack(session, obj(body.get("payload"), "payload"))
        if event == "session.status":
            return _session_status(session, body)
        return []

    async def send(
        self, client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
    ) -> SendResult:
        return await waha_api.send(client, session, message)

    async def check_number(
        self, client: httpx.AsyncClient, session: SessionConfig, phone: str
    ) -> str | None:
        return await waha_api.check_number(client, session, phone)

    async def connect(self, client: httpx.AsyncClient, session: SessionConfig) -> ConnectResult:
        return await waha_api.connect(client, session)

    async def status(self, client: httpx.AsyncClient, session: SessionConfig) -> SessionState:
        return await waha_api.status(client, session)

    async def disconnect(self, client: httpx.AsyncClient, session: SessionConfig) -> None:
        await waha_api.disconnect(client, session)

    async def fetch_media(
        self, client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
    ) -> MediaContent:
        return await waha_api.fetch_media(client, session, media)


def hmac_sha512(key: str, raw_body: bytes) -> str:
    """WAHA's X-Webhook-Hmac: hex HMAC-SHA512 of the raw body."""
    return hmac.new(key.encode(), raw_body, hashlib.sha512).hexdigest()


def _message(session: str, payload: dict[str, Any]) -> InboundMessage | None:
    message_id = short_id(req_str(payload, "id", "payload.id"))
    from_me = bool(payload.get("fromMe"))
    # On our own messages `from` is us and `to` is the chat.
    chat_jid = req_str(payload, "to" if from_me else "from", "payload.to/from")
    content = _content(payload)
    if content is None:
        return None  # system notices, revoked messages...: nothing to show
    message_type, text, media = content
    raw = sub(payload, "_data")
    is_group = chat_jid.endswith(GROUP_SUFFIX)
    participant = opt_str(payload, "participant")
    return InboundMessage(
        session_name=session,
        provider_message_id=message_id,
        chat_jid=chat_jid,
        phone=_phone(chat_jid, participant, raw),
        from_me=from_me,
        message_type=message_type,
        text=text,
        media=media,
        push_name=None if from_me else (opt_str(raw, "notifyName") or opt_str(raw, "pushName")),
        timestamp=to_datetime(payload.get("timestamp")),
        is_group=is_group,
        participant=participant if is_group else None,
    )


def _phone(chat_jid: str, participant: str | None, raw: dict[str, Any]) -> str | None:
    """Phone digits; a LID sender has one only when NOWEB's raw key carries the alt address."""
    key = sub(raw, "key")
    if chat_jid.endswith(GROUP_SUFFIX):
        return phone_of(participant, opt_str(key, "participantAlt"))
    return phone_of(chat_jid, opt_str(key, "remoteJidAlt"))


def _content(payload: dict[str, Any]) -> tuple[MessageType, str | None, MediaRef | None] | None:
    body = opt_str(payload, "body")
    hint = _type_hint(payload)
    if not payload.get("hasMedia"):
        if body is None:
            return None
        return MessageType.TEXT, body, None
    media = sub(payload, "media")
    mimetype = opt_str(media, "mimetype")
    message_type = _type_from_mime(mimetype) or hint or MessageType.DOCUMENT
    if message_type == MessageType.TEXT:
        message_type = MessageType.DOCUMENT
    ref = MediaRef(
        url=opt_str(media, "url"),  # None when WAHA did not download the file
        mimetype=mimetype,
        filename=opt_str(media, "filename"),
        caption=body,
    )
    return message_type, body, ref


def _type_hint(payload: dict[str, Any]) -> MessageType | None:
    raw = sub(payload, "_data")
    hint = opt_str(payload, "type") or opt_str(raw, "type")
    return _TYPE_HINTS.get(hint) if hint else None


def _type_from_mime(mimetype: str | None) -> MessageType | None:
    if not mimetype:
        return None
    return next(
        (t for prefix, t in _MIME_PREFIXES if mimetype.startswith(prefix)), MessageType.DOCUMENT
    )


def _ack(session: str, payload: dict[str, Any]) -> list[WebhookItem]:
    if payload.get("fromMe") is False:
        return []  # our read receipts of the customer's messages
    message_id = short_id(req_str(payload, "id", "payload.id"))
    ack = payload.get("ack")
    if not isinstance(ack, int) or isinstance(ack, bool):
        ack = _ACK_NAMES.get(opt_str(payload, "ackName") or "")
    status = _ACK.get(ack) if ack is not None else None
    if status is None:
        return []
    error = "WAHA reported ack ERROR" if status == MessageStatus.FAILED else None
    return [StatusUpdate(session, message_id, status, error=error)]


def _session_status(session: str, body: dict[str, Any]) -> list[WebhookItem]:
    # Docs: {"status": .., "statuses": [..]}; 2024 source: {"name": .., "status": ..}.
    payload = obj(body.get("payload"), "payload")
    raw_status = req_str(payload, "status", "payload.status")
    state = SESSION_STATE.get(raw_status)
    if state is None:
        return []
    error = "WAHA session FAILED" if raw_status == "FAILED" else None
    me = sub(body, "me")
    phone = phone_of(opt_str(me, "id")) if state == SessionState.CONNECTED else None
    # The QR is not in the webhook: whoever shows it calls connect() to fetch it.
    # The envelope's `id` and `timestamp` (ms) are inside the HMAC-signed body, unlike the
    # X-Webhook-Timestamp header, which a replayer could set to anything.
    return [
        ConnectionUpdate(
            session,
            state,
            error=error,
            phone=phone,
            event_id=opt_str(body, "id"),
            signed_at=to_datetime(body.get("timestamp")),
        )
    ]
