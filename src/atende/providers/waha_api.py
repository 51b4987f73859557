"""WAHA calls: send, number check, session lifecycle and QR, media (PROVIDERS.md §2.3)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from atende.providers.base import (
    ConnectResult,
    GatewayRejected,
    MediaContent,
    MediaRef,
    OutboundMessage,
    SendResult,
    SessionConfig,
)
from atende.providers.common import is_phone_jid, jid_user, opt_str
from atende.providers.http import (
    call,
    fetch_media_url,
    json_object,
    require_base_url,
    timeout_for,
    to_data_url,
)
from atende.types import MessageType, SessionState

WEBHOOK_EVENTS = ["message", "message.any", "message.ack", "session.status"]
# Atende answers 503 to an ack that overtook its own send answer: WAHA must retry, with backoff.
WEBHOOK_RETRIES = {"policy": "exponential", "delaySeconds": 2, "attempts": 10}
SESSION_STATE = {
    "STOPPED": SessionState.DISCONNECTED,
    "STARTING": SessionState.CONNECTING,
    "SCAN_QR_CODE": SessionState.QR,
    "WORKING": SessionState.CONNECTED,
    "FAILED": SessionState.DISCONNECTED,
    "PASSKEY_REQUIRED": SessionState.CONNECTING,
    "PASSKEY_CONFIRMATION_REQUIRED": SessionState.CONNECTING,
}
_SEND_ROUTE = {
    MessageType.TEXT: "/api/sendText",
    MessageType.IMAGE: "/api/sendImage",
    MessageType.DOCUMENT: "/api/sendFile",
    MessageType.AUDIO: "/api/sendVoice",
    MessageType.VIDEO: "/api/sendVideo",
}
_DEFAULT_MIME = {
    MessageType.IMAGE: "image/jpeg",
    MessageType.DOCUMENT: "application/octet-stream",
    MessageType.AUDIO: "audio/ogg; codecs=opus",
    MessageType.VIDEO: "video/mp4",
}
VOICE_MIME = "audio/ogg; codecs=opus"  # WhatsApp voice notes; anything else needs converting
# `{fromMe}_{chatId}_{msgId}[_{participant}]`; chat ids and WhatsApp ids hold no underscore.
_SERIALIZED_ID = re.compile(r"^(?:true|false)_[^_]+_([^_]+)")
_ALREADY = (409, 422)  # WAHA answers these when the session already exists / already runs


def short_id(message_id: str) -> str:
    """WhatsApp's own message id out of WAHA's serialized form; other forms pass through."""
    match = _SERIALIZED_ID.match(message_id)
    return match.group(1) if match else message_id


def _headers(session: SessionConfig, accept: str = "application/json") -> dict[str, str]:
    return {"X-Api-Key": session.api_key or "", "Accept": accept}


async def _request(
    client: httpx.AsyncClient,
    session: SessionConfig,
    method: str,
    route: str,
    *,
    json: Any = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    return await call(
        client,
        method,
        f"{require_base_url(session)}{route}",
        headers=_headers(session),
        json=json,
        params=params,
        timeout_secs=timeout_for(session),
    )


def chat_id(message: OutboundMessage) -> str:
    if message.to_jid is None:
        return f"{message.phone}@c.us"
    if is_phone_jid(message.to_jid):
        return f"{jid_user(message.to_jid)}@c.us"  # WAHA spells users @c.us, never @s.whatsapp.net
    return message.to_jid


def send_request(session: SessionConfig, message: OutboundMessage) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"session": session.name, "chatId": chat_id(message)}
    kind = message.message_type
    if kind == MessageType.TEXT:
        return _SEND_ROUTE[kind], body | {"text": message.text or ""}
    if not message.media_url:
        raise GatewayRejected(f"a {kind} message needs a media_url")
    mimetype = message.mimetype or _DEFAULT_MIME[kind]
    file = {"mimetype": mimetype, "url": message.media_url}
    if message.filename:
        file["filename"] = message.filename
    body["file"] = file
    if kind == MessageType.AUDIO:
        return _SEND_ROUTE[kind], body | {"convert": not mimetype.startswith("audio/ogg")}
    if message.caption:
        body["caption"] = message.caption
    if kind == MessageType.VIDEO:
        body |= {"asNote": False, "convert": False}
    return _SEND_ROUTE[kind], body


def _sent_id(answer: dict[str, Any]) -> str | None:
    """WEBJS answers `id: {_serialized}`, GOWS/docs `id: "true_..."`, NOWEB `key: {id}`."""
    ident = answer.get("id")
    if isinstance(ident, dict):
        ident = ident.get("_serialized") or ident.get("id")
    if not isinstance(ident, str) or not ident:
        key = answer.get("key")
        ident = opt_str(key, "id") if isinstance(key, dict) else None
    return short_id(ident) if ident else None


async def send(
    client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
) -> SendResult:
    route, body = send_request(session, message)
    response = await _request(client, session, "POST", route, json=body)
    message_id = _sent_id(json_object(response))
    if message_id is None:
        raise GatewayRejected("WAHA send answered without a message id", response.status_code)
    return SendResult(provider_message_id=message_id, jid=body["chatId"])


async def check_number(client: httpx.AsyncClient, session: SessionConfig, phone: str) -> str | None:
    params = {"phone": phone, "session": session.name}
    answer = json_object(
        await _request(client, session, "GET", "/api/contacts/check-exists", params=params)
    )
    return opt_str(answer, "chatId") if answer.get("numberExists") is True else None


def create_body(session: SessionConfig) -> dict[str, Any]:
    body: dict[str, Any] = {"name": session.name, "start": True}
    url = session.options.get("webhook_url")
    if url:
        webhook: dict[str, Any] = {"url": url, "events": WEBHOOK_EVENTS, "retries": WEBHOOK_RETRIES}
        if session.webhook_secret:
            webhook["hmac"] = {"key": session.webhook_secret}
        body["config"] = {"webhooks": [webhook]}
    return body


async def connect(client: httpx.AsyncClient, session: SessionConfig) -> ConnectResult:
    try:
        await _request(client, session, "POST", "/api/sessions", json=create_body(session))
    except GatewayRejected as exc:
        if exc.status_code not in _ALREADY:
            raise
        await _start(client, session)
    raw_status = await _raw_status(client, session)
    if raw_status == "WORKING":
        return ConnectResult(SessionState.CONNECTED)
    try:
        qr = await fetch_qr(client, session)
    except GatewayRejected:
        # No QR yet (still STARTING): the session.status webhook will say SCAN_QR_CODE.
        return ConnectResult(SESSION_STATE.get(raw_status or "", SessionState.CONNECTING))
    return ConnectResult(SessionState.QR, qr=qr)


async def _start(client: httpx.AsyncClient, session: SessionConfig) -> None:
    try:
        await _request(client, session, "POST", f"/api/sessions/{session.name}/start")
    except GatewayRejected as exc:
        if exc.status_code not in _ALREADY:
            raise


async def fetch_qr(client: httpx.AsyncClient, session: SessionConfig) -> str:
    """The current QR code as a data URL (`Accept: application/json` → {mimetype, data})."""
    answer = json_object(await _request(client, session, "GET", f"/api/{session.name}/auth/qr"))
    data = opt_str(answer, "data")
    if data is None:
        raise GatewayRejected("WAHA QR answer has no data")
    return to_data_url(data, opt_str(answer, "mimetype") or "image/png")


async def _raw_status(client: httpx.AsyncClient, session: SessionConfig) -> str | None:
    try:
        response = await _request(client, session, "GET", f"/api/sessions/{session.name}")
    except GatewayRejected as exc:
        if exc.status_code == 404:
            return None
        raise
    return opt_str(json_object(response), "status")


async def status(client: httpx.AsyncClient, session: SessionConfig) -> SessionState:
    raw_status = await _raw_status(client, session)
    return SESSION_STATE.get(raw_status or "", SessionState.DISCONNECTED)


async def disconnect(client: httpx.AsyncClient, session: SessionConfig) -> None:
    try:
        await _request(client, session, "POST", f"/api/sessions/{session.name}/logout")
    except GatewayRejected as exc:
        if exc.status_code not in (404, *_ALREADY):
            raise


async def fetch_media(
    client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
) -> MediaContent:
    if not media.url:
        raise GatewayRejected("WAHA did not download this media (media.url is empty)")
    return await fetch_media_url(
        client,
        session,
        _media_location(session, media.url),
        mimetype=media.mimetype,
        headers=_headers(session, accept="*/*"),
    )


def _media_location(session: SessionConfig, url: str) -> str:
    """WAHA builds file URLs from its own hostname setting (often `localhost`), so a `/api/files/`
    path is fetched from the configured base URL. Any other URL must be on the gateway itself."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url  # refused by fetch_media_url
    if session.base_url and parsed.path.startswith("/api/files/"):
        return f"{require_base_url(session)}{parsed.raw_path.decode()}"
    return url
