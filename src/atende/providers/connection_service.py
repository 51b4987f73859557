"""The generic "connection service" microservice of seed 003.

The seed names the routes and the `X-API-KEY` header but no payloads; Atende defines them in
docs/connection_service.md, and this module is the reference implementation of that page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from atende.providers.base import (
    ConnectionUpdate,
    ConnectResult,
    GatewayRejected,
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
from atende.providers.http import (
    call,
    fetch_media_url,
    json_object,
    require_base_url,
    timeout_for,
)
from atende.types import MessageStatus, MessageType, ProviderName, SessionState

API_KEY_HEADER = "X-API-KEY"  # seed 003: on every call, both directions
_STATES = {state.value: state for state in SessionState}
_STATUSES = {s.value: s for s in MessageStatus if s != MessageStatus.PENDING}
_TYPES = {t.value: t for t in MessageType}
_FOREIGN_KEYS = ("payload", "data", "instance", "entry")  # WAHA, Evolution, Meta envelopes
_OWN_KEYS = ("message", "message_id", "status")


class ConnectionServiceProvider:
    name = ProviderName.CONNECTION_SERVICE

    def matches(self, payload: Any) -> bool:
        if not isinstance(payload, dict) or "event" not in payload or "session" not in payload:
            return False
        if any(key in payload for key in _FOREIGN_KEYS):
            return False
        return any(key in payload for key in _OWN_KEYS)

    def session_names(self, payload: Any) -> list[str]:
        return [req_str(obj(payload, "body"), "session")]

    def verify(self, session: SessionConfig, raw_body: bytes, headers: Mapping[str, str]) -> None:
        if session.webhook_secret and not secret_equals(
            header(headers, API_KEY_HEADER), session.webhook_secret
        ):
            raise WebhookAuthError(f"missing or wrong {API_KEY_HEADER}")

    def parse(self, payload: Any) -> list[WebhookItem]:
        body = obj(payload, "body")
        event, session = req_str(body, "event"), req_str(body, "session")
        if event == "message":
            return [_message(session, obj(body.get("message"), "message"))]
        if event == "message.status":
            return _status(session, body)
        if event == "connection":
            return _connection(session, body)
        return []

    async def send(
        self, client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
    ) -> SendResult:
        body = send_body(session, message)
        answer = json_object(await _request(client, session, "POST", "/message/send", body))
        message_id = opt_str(answer, "id")
        if message_id is None:
            raise GatewayRejected("connection service send answered without an id")
        return SendResult(provider_message_id=message_id, jid=opt_str(answer, "to"))

    async def check_number(
        self, client: httpx.AsyncClient, session: SessionConfig, phone: str
    ) -> str | None:
        route = f"/sessions/{session.name}/contacts/{phone}"
        answer = json_object(await _request(client, session, "GET", route))
        return opt_str(answer, "jid") if answer.get("exists") is True else None

    async def connect(self, client: httpx.AsyncClient, session: SessionConfig) -> ConnectResult:
        body: dict[str, Any] = {"session": session.name}
        url = session.options.get("webhook_url")
        if url:
            body["webhook"] = {"url": url, "apiKey": session.webhook_secret}
        answer = json_object(await _request(client, session, "POST", "/sessions/start", body))
        return ConnectResult(_state(answer), qr=opt_str(answer, "qr"))

    async def status(self, client: httpx.AsyncClient, session: SessionConfig) -> SessionState:
        try:
            response = await _request(client, session, "GET", f"/sessions/{session.name}/status")
        except GatewayRejected as exc:
            if exc.status_code == 404:
                return SessionState.DISCONNECTED
            raise
        return _state(json_object(response))

    async def disconnect(self, client: httpx.AsyncClient, session: SessionConfig) -> None:
        try:
            await _request(client, session, "DELETE", f"/sessions/{session.name}")
        except GatewayRejected as exc:
            if exc.status_code != 404:  # an unknown session is already disconnected
                raise

    async def fetch_media(
        self, client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
    ) -> MediaContent:
        if not media.url:
            raise GatewayRejected("connection service media has no url")
        return await fetch_media_url(
            client, session, media.url, mimetype=media.mimetype, headers=_headers(session)
        )


def _headers(session: SessionConfig) -> dict[str, str]:
    return {API_KEY_HEADER: session.api_key or ""}


async def _request(
    client: httpx.AsyncClient, session: SessionConfig, method: str, route: str, json: Any = None
) -> httpx.Response:
    url = f"{require_base_url(session)}{route}"
    return await call(
        client, method, url, headers=_headers(session), json=json, timeout_secs=timeout_for(session)
    )


def send_body(session: SessionConfig, message: OutboundMessage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session": session.name,
        "to": message.to_jid or message.phone,
        "type": str(message.message_type),
    }
    if message.message_type == MessageType.TEXT:
        body["text"] = message.text or ""
        return body
    if not message.media_url:
        raise GatewayRejected(f"a {message.message_type} message needs a media_url")
    media = {
        "url": message.media_url,
        "mimetype": message.mimetype,
        "filename": message.filename,
        "caption": message.caption,
    }
    body["media"] = {k: v for k, v in media.items() if v is not None}
    return body


def _state(answer: dict[str, Any]) -> SessionState:
    state = _STATES.get(opt_str(answer, "status") or "")
    if state is None:
        raise GatewayRejected("connection service answered with an unknown session status")
    return state


def _message(session: str, message: dict[str, Any]) -> InboundMessage:
    chat = req_str(message, "from", "message.from")
    message_type = _TYPES.get(opt_str(message, "type") or "text")
    if message_type is None:
        raise MalformedPayload("message.type must be text, image, video, audio or document")
    media = _media(message) if message_type != MessageType.TEXT else None
    text = opt_str(message, "text") or (media.caption if media else None)
    if message_type == MessageType.TEXT and text is None:
        raise MalformedPayload("a text message needs message.text")
    is_group = chat.endswith(GROUP_SUFFIX)
    from_me = bool(message.get("fromMe"))
    return InboundMessage(
        session_name=session,
        provider_message_id=req_str(message, "id", "message.id"),
        chat_jid=chat,
        phone=_phone(chat, opt_str(message, "participant") if is_group else None),
        from_me=from_me,
        message_type=message_type,
        text=text,
        media=media,
        push_name=None if from_me else opt_str(message, "pushName"),
        timestamp=to_datetime(message.get("timestamp")),
        is_group=is_group,
        participant=opt_str(message, "participant") if is_group else None,
    )


def _phone(chat: str, participant: str | None) -> str | None:
    if participant is not None:
        return _phone(participant, None)
    return chat if chat.isdigit() else phone_of(chat)


def _media(message: dict[str, Any]) -> MediaRef:
    media = obj(message.get("media"), "message.media")
    return MediaRef(
        url=req_str(media, "url", "message.media.url"),
        mimetype=opt_str(media, "mimetype"),
        filename=opt_str(media, "filename"),
        caption=opt_str(media, "caption"),
    )


def _status(session: str, body: dict[str, Any]) -> list[WebhookItem]:
    status = _STATUSES.get(req_str(body, "status"))
    if status is None:
        return []  # e.g. "pending": nothing new
    return [
        StatusUpdate(
            session_name=session,
            provider_message_id=req_str(body, "message_id"),
            status=status,
            error=opt_str(body, "error"),
            timestamp=to_datetime(body.get("timestamp")),
        )
    ]


def _connection(session: str, body: dict[str, Any]) -> list[WebhookItem]:
    state = _STATES.get(req_str(body, "status"))
    if state is None:
        raise MalformedPayload("status must be connected, qr, connecting or disconnected")
    return [
        ConnectionUpdate(
            session_name=session,
            state=state,
            qr=opt_str(body, "qr"),
            error=opt_str(body, "error"),
            phone=opt_str(body, "phone"),
            event_id=opt_str(body, "id"),  # optional: a redelivered event is applied once
        )
    ]
