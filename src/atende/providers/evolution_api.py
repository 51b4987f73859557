"""Evolution API calls: send, number check, instance lifecycle, media (PROVIDERS.md §1.5).

`options["evolution_version"]` picks the body dialect: "v2" (default) or "v1". Both versions
answer a send with `{"key": {"remoteJid", "fromMe", "id"}, ...}`.
"""

from __future__ import annotations

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
from atende.providers.common import GROUP_SUFFIX, LID_SUFFIX, is_phone_jid, jid_user, opt_str
from atende.providers.http import (
    call,
    decode_base64,
    decode_data_url,
    json_body,
    json_object,
    require_base_url,
    timeout_for,
)
from atende.types import MessageType, SessionState

WEBHOOK_EVENTS = [
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "CONNECTION_UPDATE",
    "QRCODE_UPDATED",
    "SEND_MESSAGE",
]
_MEDIATYPE = {
    MessageType.IMAGE: "image",
    MessageType.VIDEO: "video",
    MessageType.DOCUMENT: "document",
    MessageType.AUDIO: "audio",
}
_STATE = {
    "open": SessionState.CONNECTED,
    "connecting": SessionState.CONNECTING,
    "close": SessionState.DISCONNECTED,
    "refused": SessionState.DISCONNECTED,
}


def _version(session: SessionConfig) -> str:
    return "v1" if session.options.get("evolution_version") == "v1" else "v2"


def _headers(session: SessionConfig) -> dict[str, str]:
    return {"apikey": session.api_key or ""}


def describe_error(body: Any) -> str | None:
    """A send to a number that is not on WhatsApp answers 400 `[{jid, exists: false, number}]`."""
    response = body.get("response") if isinstance(body, dict) else None
    messages = response.get("message") if isinstance(response, dict) else None
    if isinstance(messages, list):
        absent = [m for m in messages if isinstance(m, dict) and m.get("exists") is False]
        if absent:
            numbers = ", ".join(str(m.get("number") or m.get("jid")) for m in absent)
            return f"not on WhatsApp: {numbers}"
    return None


async def _request(
    client: httpx.AsyncClient,
    session: SessionConfig,
    method: str,
    route: str,
    json: Any = None,
) -> httpx.Response:
    url = f"{require_base_url(session)}{route}"
    return await call(
        client,
        method,
        url,
        headers=_headers(session),
        json=json,
        timeout_secs=timeout_for(session),
        describe_error=describe_error,
    )


def recipient(message: OutboundMessage) -> str:
    """The `number` Evolution expects: phone digits, or a group / LID address verbatim."""
    jid = message.to_jid
    if jid and is_phone_jid(jid):
        return jid_user(jid)
    if jid and (jid.endswith(GROUP_SUFFIX) or (jid.endswith(LID_SUFFIX) and not message.phone)):
        return jid  # Evolution's createJid passes full @g.us / @lid addresses through
    return message.phone


def send_request(session: SessionConfig, message: OutboundMessage) -> tuple[str, dict[str, Any]]:
    """(route, body) for one outbound message, in the session's Evolution dialect."""
    number, name = recipient(message), session.name
    v1 = _version(session) == "v1"
    if message.message_type == MessageType.TEXT:
        if v1:
            return f"/message/sendText/{name}", {
                "number": number,
                "textMessage": {"text": message.text or ""},
            }
        return f"/message/sendText/{name}", {"number": number, "text": message.text or ""}
    media = _require_media(message)
    if message.message_type == MessageType.AUDIO:
        # Agents' audio goes out as a voice note (ptt), which is what WhatsApp users expect.
        if v1:
            return f"/message/sendWhatsAppAudio/{name}", {
                "number": number,
                "audioMessage": {"audio": media},
            }
        return f"/message/sendWhatsAppAudio/{name}", {"number": number, "audio": media}
    fields = {
        "mediatype": _MEDIATYPE[message.message_type],
        "mimetype": message.mimetype,
        "media": media,
        "caption": message.caption,
        "fileName": message.filename,
    }
    if v1:
        fields.pop("mimetype")  # v1's mediaMessage schema has no mimetype
        return f"/message/sendMedia/{name}", {"number": number, "mediaMessage": _compact(fields)}
    return f"/message/sendMedia/{name}", {"number": number, **_compact(fields)}


def _require_media(message: OutboundMessage) -> str:
    if not message.media_url:
        raise GatewayRejected(f"a {message.message_type} message needs a media_url")
    return message.media_url


def _compact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


async def send(
    client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
) -> SendResult:
    route, body = send_request(session, message)
    response = await _request(client, session, "POST", route, body)
    key = json_object(response).get("key")
    message_id = opt_str(key, "id") if isinstance(key, dict) else None
    if message_id is None:
        raise GatewayRejected("Evolution send answered without key.id", response.status_code)
    return SendResult(provider_message_id=message_id, jid=opt_str(key, "remoteJid"))


async def check_number(client: httpx.AsyncClient, session: SessionConfig, phone: str) -> str | None:
    route = f"/chat/whatsappNumbers/{session.name}"
    response = await _request(client, session, "POST", route, {"numbers": [phone]})
    results = json_body(response)
    for entry in results if isinstance(results, list) else []:
        if isinstance(entry, dict) and entry.get("exists") is True:
            return opt_str(entry, "jid")
    return None


async def _state(client: httpx.AsyncClient, session: SessionConfig) -> str | None:
    """The instance's raw state, or None when Evolution does not know the instance."""
    try:
        response = await _request(
            client, session, "GET", f"/instance/connectionState/{session.name}"
        )
    except GatewayRejected as exc:
        if exc.status_code == 404:
            return None
        raise
    instance = json_object(response).get("instance")
    return opt_str(instance, "state") if isinstance(instance, dict) else None


async def status(client: httpx.AsyncClient, session: SessionConfig) -> SessionState:
    state = await _state(client, session)
    return _STATE.get(state or "", SessionState.DISCONNECTED)


async def connect(client: httpx.AsyncClient, session: SessionConfig) -> ConnectResult:
    state = await _state(client, session)
    if state is None:
        created = json_object(
            await _request(client, session, "POST", "/instance/create", create_body(session))
        )
        qrcode = created.get("qrcode")
        qr = opt_str(qrcode, "base64") if isinstance(qrcode, dict) else None
        if qr is not None:
            return ConnectResult(SessionState.QR, qr=qr)
    elif state == "open":
        return ConnectResult(SessionState.CONNECTED)
    answer = json_object(
        await _request(client, session, "GET", f"/instance/connect/{session.name}")
    )
    instance = answer.get("instance")
    if isinstance(instance, dict) and instance.get("state") == "open":
        return ConnectResult(SessionState.CONNECTED)
    qr = opt_str(answer, "base64")
    return ConnectResult(SessionState.QR, qr=qr) if qr else ConnectResult(SessionState.CONNECTING)


def create_body(session: SessionConfig) -> dict[str, Any]:
    """POST /instance/create; v2 reads only the nested `webhook` object (PROVIDERS.md §1.5)."""
    url = session.options.get("webhook_url")
    if _version(session) == "v1":
        body: dict[str, Any] = {"instanceName": session.name, "qrcode": True}
        if url:
            # v1 cannot send custom headers: a secret there must equal the exposed instance token.
            body |= {"webhook": url, "webhook_by_events": False, "events": WEBHOOK_EVENTS}
        return body
    body = {"instanceName": session.name, "integration": "WHATSAPP-BAILEYS", "qrcode": True}
    if url:
        webhook: dict[str, Any] = {
            "url": url,
            "byEvents": False,
            "base64": False,
            "events": WEBHOOK_EVENTS,
        }
        if session.webhook_secret:
            webhook["headers"] = {"apikey": session.webhook_secret}
        body["webhook"] = webhook
    return body


async def disconnect(client: httpx.AsyncClient, session: SessionConfig) -> None:
    try:
        await _request(client, session, "DELETE", f"/instance/logout/{session.name}")
    except GatewayRejected as exc:
        # Logging out an unknown or already-closed instance leaves it as the caller wants it.
        if exc.status_code not in (400, 404):
            raise


async def fetch_media(
    client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
) -> MediaContent:
    if media.url and media.url.startswith("data:"):
        data, mimetype = decode_data_url(media.url)
        return MediaContent(media.mimetype or mimetype, data=data)
    if media.media_id is None:
        raise GatewayRejected("Evolution media needs the message id to download it")
    route = f"/chat/getBase64FromMediaMessage/{session.name}"
    body = {"message": {"key": {"id": media.media_id}}, "convertToMp4": False}
    answer = json_object(await _request(client, session, "POST", route, body))
    encoded = opt_str(answer, "base64")
    if encoded is None:
        raise GatewayRejected("Evolution returned no base64 for the media")
    if encoded.startswith("data:"):
        data, mimetype = decode_data_url(encoded)
    else:
        data, mimetype = decode_base64(encoded), "application/octet-stream"
    mimetype = opt_str(answer, "mimetype") or media.mimetype or mimetype
    return MediaContent(mimetype, data=data)
