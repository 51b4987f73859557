"""Meta Cloud API calls: send, phone-number status, media download (PROVIDERS.md §3.5)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx

from atende.providers.base import (
    GatewayRejected,
    MediaContent,
    MediaRef,
    OutboundMessage,
    SendResult,
    SessionConfig,
)
from atende.providers.common import opt_str
from atende.providers.http import call, fetch_media_url, json_object, timeout_for
from atende.types import MessageType, SessionState

DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"
# Where Meta serves media files (`GET /{media-id}` answers with a lookaside.fbsbx.com URL).
MEDIA_HOSTS = ("lookaside.fbsbx.com",)


def graph_base(session: SessionConfig) -> str:
    """`{graph}/{version}`; `base_url` overrides the graph host (tests point it at a fake)."""
    graph = session.base_url or str(session.options.get("graph_url") or DEFAULT_GRAPH_URL)
    version = str(session.options.get("api_version") or DEFAULT_API_VERSION)
    return f"{graph.rstrip('/')}/{version}"


def _headers(session: SessionConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.api_key or ''}"}


async def _request(
    client: httpx.AsyncClient, session: SessionConfig, method: str, url: str, json: Any = None
) -> httpx.Response:
    return await call(
        client, method, url, headers=_headers(session), json=json, timeout_secs=timeout_for(session)
    )


def send_body(message: OutboundMessage) -> dict[str, Any]:
    # A known wa_id is used verbatim (it may lack Brazil's ninth digit); a bare phone goes E.164.
    to = message.to_jid or f"+{message.phone}"
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": str(message.message_type),
    }
    if message.message_type == MessageType.TEXT:
        body["text"] = {"preview_url": False, "body": message.text or ""}
        return body
    if not message.media_url:
        raise GatewayRejected(f"a {message.message_type} message needs a media_url")
    node: dict[str, Any] = {"link": message.media_url}
    if message.caption and message.message_type != MessageType.AUDIO:  # audio takes no caption
        node["caption"] = message.caption
    if message.filename and message.message_type == MessageType.DOCUMENT:
        node["filename"] = message.filename
    body[str(message.message_type)] = node
    return body


async def send(
    client: httpx.AsyncClient, session: SessionConfig, message: OutboundMessage
) -> SendResult:
    url = f"{graph_base(session)}/{session.name}/messages"
    response = await _request(client, session, "POST", url, send_body(message))
    answer = json_object(response)
    message_id = _first(answer, "messages", "id")
    if message_id is None:
        raise GatewayRejected(
            "Cloud API send answered without messages[0].id", response.status_code
        )
    return SendResult(provider_message_id=message_id, jid=_first(answer, "contacts", "wa_id"))


def _first(answer: dict[str, Any], key: str, field: str) -> str | None:
    items = answer.get(key)
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return opt_str(items[0], field)
    return None


async def status(client: httpx.AsyncClient, session: SessionConfig) -> SessionState:
    """A phone number the token can read is connected; 4xx (bad token / id) is GatewayRejected."""
    await _request(client, session, "GET", f"{graph_base(session)}/{session.name}")
    return SessionState.CONNECTED


async def fetch_media(
    client: httpx.AsyncClient, session: SessionConfig, media: MediaRef
) -> MediaContent:
    if media.media_id is None:
        raise GatewayRejected("Cloud API media needs its media id")
    meta = json_object(
        await _request(client, session, "GET", f"{graph_base(session)}/{media.media_id}")
    )
    url = opt_str(meta, "url")
    if url is None:
        raise GatewayRejected("Cloud API media lookup answered without a url")
    # The lookaside URL only answers with the same bearer token; it is Meta's, or refused.
    graph = session.base_url or str(session.options.get("graph_url") or DEFAULT_GRAPH_URL)
    return await fetch_media_url(
        client,
        replace(session, base_url=graph),
        url,
        mimetype=opt_str(meta, "mime_type") or media.mimetype,
        headers=_headers(session),
        also_from=MEDIA_HOSTS,
    )
