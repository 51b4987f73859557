"""The one small protocol every WhatsApp gateway sits behind.

A provider module turns its gateway's webhook payloads into the neutral items below, and turns
Atende's outbound messages into the gateway's documented HTTP calls. It never touches the
database or sockets: `webhooks.py` and `outbox.py` do that with what it returns.

Errors (all subclasses of `ProviderError`):
- `MalformedPayload`  — the webhook body is not of the provider's shape (→ HTTP 400).
- `WebhookAuthError`  — missing or wrong key / signature (→ HTTP 401).
- `GatewayRejected`   — the gateway answered 4xx: permanent, do not retry.
- `GatewayUnavailable`— 5xx, timeout or connection error: retry with backoff.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from atende.types import MessageStatus, MessageType, ProviderName, SessionState


class ProviderError(Exception):
    """Base of every error a provider module raises."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedPayload(ProviderError):
    """The webhook body does not have the shape this provider documents."""


class WebhookAuthError(ProviderError):
    """The webhook's API key or signature is missing or wrong."""


class GatewayRejected(ProviderError):
    """The gateway refused the request (4xx): retrying will not help.

    `reason` is Atende's own words (it reaches agents and API clients); `detail` is what the
    gateway said, for the log only: a gateway's answer is never shown to a client."""

    def __init__(
        self, reason: str, status_code: int | None = None, *, detail: str | None = None
    ) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.detail = detail


class GatewayAddressRefused(GatewayRejected):
    """The URL's scheme or address is one Atende may not connect to (see `atende.netguard`)."""


class GatewayAnswerTooLarge(GatewayRejected):
    """The gateway's answer is larger than Atende reads (see `netguard.max_response_bytes`)."""


class GatewayUnavailable(ProviderError):
    """The gateway failed transiently (5xx, timeout, connection refused): retry later.

    `maybe_delivered`: the request reached the gateway whole and no answer came back (a read
    timeout, a connection dropped mid-answer), so the gateway may have acted on it anyway.
    """

    def __init__(self, reason: str, *, maybe_delivered: bool = False) -> None:
        super().__init__(reason)
        self.maybe_delivered = maybe_delivered


@dataclass(frozen=True)
class SessionConfig:
    """What a provider needs to know about one tenant's gateway session."""

    provider: ProviderName
    name: str  # instance / session name; for Cloud API the phone_number_id
    base_url: str | None = None
    api_key: str | None = None  # gateway key / Cloud access token; never logged
    webhook_secret: str | None = None  # HMAC key, Cloud app secret, or expected webhook API key
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"evolution_version": "v1"}
    session_id: str | None = None  # Atende's id of the session; opaque to providers


@dataclass(frozen=True)
class MediaRef:
    """Where an inbound media file lives at the gateway (a URL, or a provider media id)."""

    url: str | None = None
    media_id: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    caption: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A message seen on the customer's chat: from the customer, or sent from the phone."""

    session_name: str
    provider_message_id: str
    chat_jid: str  # the gateway's own address of the chat, kept verbatim for replies
    phone: str | None  # customer phone digits (no '+'); None when only a LID is known
    from_me: bool
    message_type: MessageType
    text: str | None = None
    media: MediaRef | None = None
    push_name: str | None = None
    timestamp: datetime | None = None
    is_group: bool = False
    participant: str | None = None


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery acknowledgement for a message we (or the phone) sent."""

    session_name: str
    provider_message_id: str
    status: MessageStatus
    error: str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True)
class ConnectionUpdate:
    """The gateway session changed state, or produced a new QR code."""

    session_name: str
    state: SessionState
    qr: str | None = None  # a data URL (data:image/png;base64,...) when known
    error: str | None = None
    phone: str | None = None
    # Replay protection for state changes: the provider's id of this event (applied once),
    # and the time its signature covers (refused outside the window). None when not sent.
    event_id: str | None = None
    signed_at: datetime | None = None


WebhookItem = InboundMessage | StatusUpdate | ConnectionUpdate


@dataclass(frozen=True)
class OutboundMessage:
    """An agent's message on its way out."""

    to_jid: str | None  # the contact's gateway address when known (preferred)
    phone: str  # E.164 digits without '+'
    message_type: MessageType
    text: str | None = None
    media_url: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    caption: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    jid: str | None = None  # the address the gateway actually used (e.g. Cloud's wa_id)


@dataclass(frozen=True)
class ConnectResult:
    state: SessionState
    qr: str | None = None  # data URL


@dataclass(frozen=True)
class MediaContent:
    """A media file on its way through: inline bytes (base64 gateways), or a gateway answer
    still being read (`response`, opened with `stream=True`), so a large file is never held
    whole. Whoever receives one reads it with `chunks()` or `read()` and then calls `aclose()`."""

    mimetype: str
    data: bytes = b""
    response: httpx.Response | None = None

    @property
    def length(self) -> int | None:
        """The size, when known before reading (inline, or a declared Content-Length)."""
        if self.response is None:
            return len(self.data)
        declared = self.response.headers.get("content-length", "")
        return int(declared) if declared.isdigit() else None

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        if self.response is None:
            yield self.data
            return
        async for chunk in self.response.aiter_bytes():
            yield chunk

    async def read(self) -> bytes:
        """The whole file (tests, and callers that need it whole); closes the answer."""
        try:
            return b"".join([chunk async for chunk in self.chunks()])
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self.response is not None:
            await self.response.aclose()


class Provider(Protocol):
    """One gateway. Stateless: every call gets the session config and a shared httpx client."""

    name: ProviderName

    def matches(self, payload: Any) -> bool:
        """Whether a body posted to the generic webhook URL is of this provider's shape."""
        ...

    def session_names(self, payload: Any) -> list[str]:
        """The session/instance names a webhook body is about (to find tenant and secret).

        Raises MalformedPayload when the body has none.
        """
        ...

    def verify(self, session: SessionConfig, raw_body: bytes, headers: Mapping[str, str]) -> None:
        """Raise WebhookAuthError unless the request carries this session's credentials."""
        ...

    def parse(self, payload: Any) -> list[WebhookItem]:
        """Turn a webhook body into items; [] for events we do not handle.

        Raises MalformedPayload for a body of a handled event that lacks required fields.
        """
        ...

    async def send(
        self, client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
    ) -> SendResult: ...

    async def check_number(
        self, client: httpx.AsyncClient, session: SessionConfig, phone: str
    ) -> str | None:
        """The WhatsApp address the gateway resolves `phone` to; None if not on WhatsApp."""
        ...

    async def connect(self, client: httpx.AsyncClient, session: SessionConfig) -> ConnectResult: ...

    async def status(self, client: httpx.AsyncClient, session: SessionConfig) -> SessionState: ...

    async def disconnect(self, client: httpx.AsyncClient, session: SessionConfig) -> None: ...

    async def fetch_media(
        self, client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
    ) -> MediaContent: ...
