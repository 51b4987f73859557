"""Meta WhatsApp Cloud API: webhook parsing, signature, handshake (PROVIDERS.md §3).

Session mapping: `name` = phone_number_id, `api_key` = access token, `webhook_secret` = app
secret, `options["verify_token"]` for the GET handshake. Gateway calls live in cloud_api.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import httpx

from atende.providers import cloud_api
from atende.providers.base import (
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
from atende.providers.common import header, obj, opt_str, req_str, secret_equals, sub, to_datetime
from atende.types import MessageStatus, MessageType, ProviderName, SessionState

WABA_OBJECT = "whatsapp_business_account"
_MEDIA_TYPES = {
    "image": MessageType.IMAGE,
    "sticker": MessageType.IMAGE,
    "video": MessageType.VIDEO,
    "audio": MessageType.AUDIO,
    "document": MessageType.DOCUMENT,
}
_STATUS = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "played": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}


def verify_handshake(params: Mapping[str, str], verify_token: str) -> str:
    """Meta's GET subscription check: the `hub.challenge` to echo back as the body."""
    if params.get("hub.mode") != "subscribe":
        raise WebhookAuthError("hub.mode must be 'subscribe'")
    if not verify_token or not secret_equals(params.get("hub.verify_token"), verify_token):
        raise WebhookAuthError("wrong hub.verify_token")
    challenge = params.get("hub.challenge")
    if not challenge:
        raise MalformedPayload("hub.challenge is missing")
    return challenge


def signature(app_secret: str, raw_body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta sends: `sha256=` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


class CloudProvider:
    name = ProviderName.CLOUD

    def matches(self, payload: Any) -> bool:
        if not isinstance(payload, dict):
            return False
        return payload.get("object") == WABA_OBJECT or isinstance(payload.get("entry"), list)

    def session_names(self, payload: Any) -> list[str]:
        """Every phone_number_id in the body. A well-formed body about something else (account
        updates, templates) has none: that is [] here, an event to acknowledge and ignore."""
        names: list[str] = []
        for value in _values(payload):
            name = _phone_number_id(value)
            if name not in names:
                names.append(name)
        return names

    def verify(self, session: SessionConfig, raw_body: bytes, headers: Mapping[str, str]) -> None:
        if not session.webhook_secret:
            return
        given = header(headers, "x-hub-signature-256")
        if not secret_equals(given, signature(session.webhook_secret, raw_body)):
            raise WebhookAuthError("missing or wrong X-Hub-Signature-256")

    def parse(self, payload: Any) -> list[WebhookItem]:
        items: list[WebhookItem] = []
        for value in _values(payload):
            session = _phone_number_id(value)
            names = _contact_names(value)
            for message in _list(value, "messages"):
                item = _message(session, obj(message, "messages[]"), names)
                if item is not None:
                    items.append(item)
            for status in _list(value, "statuses"):
                update = _status(session, obj(status, "statuses[]"))
                if update is not None:
                    items.append(update)
        return items

    async def send(
        self, client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
    ) -> SendResult:
        return await cloud_api.send(client, session, message)

    async def check_number(
        self, client: httpx.AsyncClient, session: SessionConfig, phone: str
    ) -> str | None:
        # Cloud API has no existence check; the real wa_id comes back from the first send.
        return phone

    async def connect(self, client: httpx.AsyncClient, session: SessionConfig) -> ConnectResult:
        return ConnectResult(await cloud_api.status(client, session))

    async def status(self, client: httpx.AsyncClient, session: SessionConfig) -> SessionState:
        return await cloud_api.status(client, session)

    async def disconnect(self, client: httpx.AsyncClient, session: SessionConfig) -> None:
        return None  # a Cloud API number has no session to log out of

    async def fetch_media(
        self, client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
    ) -> MediaContent:
        return await cloud_api.fetch_media(client, session, media)


def _values(payload: Any) -> list[dict[str, Any]]:
    """The `value` of every `messages` change; other fields are not ours to handle."""
    body = obj(payload, "body")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise MalformedPayload("entry must be a list")
    values: list[dict[str, Any]] = []
    for entry in entries:
        changes = obj(entry, "entry[]").get("changes")
        if not isinstance(changes, list):
            raise MalformedPayload("entry[].changes must be a list")
        for change in changes:
            change = obj(change, "entry[].changes[]")
            if change.get("field") == "messages":
                values.append(obj(change.get("value"), "changes[].value"))
    return values


def _phone_number_id(value: dict[str, Any]) -> str:
    return req_str(
        obj(value.get("metadata"), "value.metadata"), "phone_number_id", "metadata.phone_number_id"
    )


def _list(value: dict[str, Any], key: str) -> list[Any]:
    items = value.get(key, [])
    if not isinstance(items, list):
        raise MalformedPayload(f"value.{key} must be a list")
    return items


def _contact_names(value: dict[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in _list(value, "contacts"):
        if isinstance(contact, dict) and isinstance(contact.get("profile"), dict):
            wa_id, name = opt_str(contact, "wa_id"), opt_str(contact["profile"], "name")
            if wa_id and name:
                names[wa_id] = name
    return names


def _message(session: str, message: dict[str, Any], names: dict[str, str]) -> InboundMessage | None:
    sender = req_str(message, "from", "messages[].from")
    content = _content(message)
    if content is None:
        return None  # reactions, locations, unsupported...: nothing for the inbox yet
    message_type, text, media = content
    return InboundMessage(
        session_name=session,
        provider_message_id=req_str(message, "id", "messages[].id"),
        chat_jid=sender,  # the wa_id, verbatim: it may lack Brazil's ninth digit
        phone=sender if sender.isdigit() else None,
        from_me=False,
        message_type=message_type,
        text=text,
        media=media,
        push_name=names.get(sender),
        timestamp=to_datetime(message.get("timestamp")),
    )


def _content(message: dict[str, Any]) -> tuple[MessageType, str | None, MediaRef | None] | None:
    kind = opt_str(message, "type")
    if kind == "text":
        return (
            MessageType.TEXT,
            req_str(obj(message.get("text"), "text"), "body", "text.body"),
            None,
        )
    if kind in _MEDIA_TYPES:
        node = obj(message.get(kind), kind)
        ref = MediaRef(
            media_id=req_str(node, "id", f"{kind}.id"),
            mimetype=opt_str(node, "mime_type"),
            filename=opt_str(node, "filename"),
            caption=opt_str(node, "caption"),
        )
        return _MEDIA_TYPES[kind], ref.caption, ref
    reply = _reply_text(message, kind)
    return (MessageType.TEXT, reply, None) if reply else None


def _reply_text(message: dict[str, Any], kind: str | None) -> str | None:
    """Quick-reply buttons and interactive lists: the customer's choice, shown as text."""
    node = message.get(kind) if kind in ("button", "interactive") else None
    if not isinstance(node, dict):
        return None
    if kind == "button":
        return opt_str(node, "text")
    reply = node.get("button_reply") or node.get("list_reply")
    return opt_str(reply, "title") if isinstance(reply, dict) else None


def _status(session: str, status: dict[str, Any]) -> StatusUpdate | None:
    value = _STATUS.get(opt_str(status, "status") or "")
    if value is None:
        return None
    return StatusUpdate(
        session_name=session,
        provider_message_id=req_str(status, "id", "statuses[].id"),
        status=value,
        error=_status_error(status) if value == MessageStatus.FAILED else None,
        timestamp=to_datetime(status.get("timestamp")),
    )


def _status_error(status: dict[str, Any]) -> str:
    errors = status.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    data = sub(first, "error_data")
    parts = [opt_str(first, "title"), opt_str(first, "message"), opt_str(data, "details")]
    text = " — ".join(dict.fromkeys(p for p in parts if p))  # Meta often repeats title as message
    code = first.get("code")
    return f"{text} (code {code})" if code is not None and text else text or "failed"
