"""The built-in sandbox WhatsApp: a simulated phone, so the whole loop runs offline.

A sandbox session is connected at once. An outbound message is accepted with a fresh id and then
acknowledged `delivered` and `read` after short, configurable delays, through the same status path
a real gateway's webhook takes. Customer messages come in through `POST /api/webhooks/sandbox`:

    {"session": "demo", "from": "5511999990001", "text": "Oi!", "push_name": "Maria",
     "id": "optional-unique-id", "type": "text|image|video|audio|document",
     "media_url": "...", "mimetype": "...", "filename": "...", "caption": "..."}

with the session's webhook secret (if it has one) in the `X-Webhook-Secret` header.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from atende.providers.base import (
    ConnectResult,
    InboundMessage,
    MalformedPayload,
    MediaContent,
    MediaRef,
    OutboundMessage,
    SendResult,
    SessionConfig,
    WebhookAuthError,
    WebhookItem,
)
from atende.providers.http import decode_data_url, fetch_media_url
from atende.types import MessageStatus, MessageType, ProviderName, SessionState

AckSink = Callable[[str, str, MessageStatus], Awaitable[None]]
MAX_FIELD_CHARS = 10_000  # text is checked again (4096) by the sanitiser; this bounds the rest


class SandboxProvider:
    name = ProviderName.SANDBOX

    def __init__(self, ack_sink: AckSink, delivered_after_ms: int, read_after_ms: int) -> None:
        self._ack_sink = ack_sink
        self._delivered_after = delivered_after_ms / 1000
        self._read_after = read_after_ms / 1000
        self._tasks: set[asyncio.Task[None]] = set()

    def matches(self, payload: Any) -> bool:
        return False  # only reachable through its explicit URL

    def session_names(self, payload: Any) -> list[str]:
        if not isinstance(payload, dict) or not isinstance(payload.get("session"), str):
            raise MalformedPayload("sandbox webhook needs a string `session`")
        return [payload["session"]]

    def verify(self, session: SessionConfig, raw_body: bytes, headers: Mapping[str, str]) -> None:
        if not session.webhook_secret:
            return
        given = headers.get("x-webhook-secret") or headers.get("apikey") or ""
        if not hmac.compare_digest(given.encode(), session.webhook_secret.encode()):
            raise WebhookAuthError("missing or wrong X-Webhook-Secret")

    def parse(self, payload: Any) -> list[WebhookItem]:
        if not isinstance(payload, dict):
            raise MalformedPayload("body must be a JSON object")
        sender = payload.get("from")
        if not isinstance(sender, str) or not sender.strip():
            raise MalformedPayload("`from` (the customer's phone) is required")
        kind = _message_type(payload.get("type", "text"))
        text = _opt_str(payload, "text")
        media = None
        if kind != MessageType.TEXT:
            media = MediaRef(
                url=_opt_str(payload, "media_url"),
                mimetype=_opt_str(payload, "mimetype"),
                filename=_opt_str(payload, "filename"),
                caption=_opt_str(payload, "caption"),
            )
        elif not text:
            raise MalformedPayload("`text` is required for a text message")
        return [
            InboundMessage(
                session_name=payload["session"],
                provider_message_id=_opt_str(payload, "id") or f"sbx-in-{uuid.uuid4().hex}",
                chat_jid=f"{''.join(c for c in sender if c.isdigit())}@s.whatsapp.net",
                phone=sender,
                from_me=False,
                message_type=kind,
                text=text,
                media=media,
                push_name=_opt_str(payload, "push_name"),
                timestamp=datetime.now(UTC),
            )
        ]

    async def send(
        self, client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
    ) -> SendResult:
        wamid = f"sbx-{uuid.uuid4().hex}"
        task = asyncio.create_task(self._play_acks(session.session_id or "", wamid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return SendResult(provider_message_id=wamid, jid=f"{message.phone}@s.whatsapp.net")

    async def _play_acks(self, session_id: str, wamid: str) -> None:
        # The simulated phone: delivered, then read, as a real one acks after a moment.
        # (By session id, not name: names are unique per tenant only.)
        await asyncio.sleep(self._delivered_after)
        await self._ack_sink(session_id, wamid, MessageStatus.DELIVERED)
        await asyncio.sleep(max(0.0, self._read_after - self._delivered_after))
        await self._ack_sink(session_id, wamid, MessageStatus.READ)

    async def check_number(
        self, client: httpx.AsyncClient, session: SessionConfig, phone: str
    ) -> str | None:
        return f"{phone}@s.whatsapp.net"

    async def connect(self, client: httpx.AsyncClient, session: SessionConfig) -> ConnectResult:
        return ConnectResult(state=SessionState.CONNECTED)

    async def status(self, client: httpx.AsyncClient, session: SessionConfig) -> SessionState:
        return SessionState.CONNECTED

    async def disconnect(self, client: httpx.AsyncClient, session: SessionConfig) -> None:
        return None

    async def fetch_media(
        self, client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
    ) -> MediaContent:
        if not media.url:
            raise MalformedPayload("sandbox media has no URL")
        if media.url.startswith("data:"):  # the simulator's own files
            data, mimetype = decode_data_url(media.url)
            return MediaContent(media.mimetype or mimetype, data=data)
        # A URL only from the session's base_url: a simulated customer is no reason to let
        # Atende fetch an arbitrary address.
        return await fetch_media_url(client, session, media.url, mimetype=media.mimetype)

    async def close(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _message_type(value: Any) -> MessageType:
    try:
        return MessageType(value)
    except ValueError as exc:
        raise MalformedPayload(f"unknown message type {str(value)[:20]!r}") from exc


def _opt_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"`{key}` must be a string")
    return value[:MAX_FIELD_CHARS]
