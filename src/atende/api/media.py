"""Inbound media served through Atende, so a browser never needs a gateway key.

The file and its claimed type come from a customer (through the gateway's webhook), so the answer
is built to be harmless whatever it holds: only a short list of image/audio/video types is served
as itself and inline; anything else is `application/octet-stream` and an attachment; and every
media answer carries `nosniff` and a `sandbox` CSP, so even a page opened by hand runs no script
with Atende's origin. The bytes stream through with a size cap and a time cap, never held whole.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from atende.api.deps import CtxDep
from atende.context import AppContext
from atende.db.models import Message, WhatsAppSession
from atende.errors import (
    GatewayAddressNotAllowed,
    GatewayError,
    MediaTooLarge,
    NotFound,
    Unauthorized,
)
from atende.providers.base import (
    GatewayAddressRefused,
    GatewayAnswerTooLarge,
    MediaContent,
    MediaRef,
    ProviderError,
)
from atende.providers.http import with_default_timeout
from atende.services import conversations as conv_svc
from atende.services.access import authorize
from atende.services.auth import Principal
from atende.services.sessions import config_of

logger = logging.getLogger(__name__)
router = APIRouter(tags=["media"])

# Types a browser may show inline: decoded by media elements, never run as a document.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "video/mp4",
        "audio/ogg",  # WhatsApp voice notes (opus)
        "audio/mpeg",
    }
)
DOWNLOAD_TYPE = "application/octet-stream"
FALLBACK_NAME = "media"
MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
    "Cache-Control": "private, max-age=3600",
}


class MediaAborted(Exception):
    """A download stopped half-way (too large, too slow): the connection is dropped so that the
    client sees a failed download rather than a truncated file."""


def served_type(claimed: str | None) -> str:
    """The type the answer is served with: an allowed inline type, else octet-stream."""
    base = (claimed or "").split(";", 1)[0].strip().lower()
    return base if base in INLINE_TYPES else DOWNLOAD_TYPE


def content_disposition(media_type: str, filename: str | None) -> str:
    """RFC 6266: an ASCII `filename` for old clients and the exact name in `filename*`."""
    kind = "inline" if media_type in INLINE_TYPES else "attachment"
    name = "".join(ch for ch in (filename or "") if ch.isprintable()).strip() or FALLBACK_NAME
    ascii_name = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in name).strip()
    encoded = quote(name, safe="")
    return f"{kind}; filename=\"{ascii_name or FALLBACK_NAME}\"; filename*=UTF-8''{encoded}"


async def _principal(request: Request) -> Principal:
    """Bearer header, or `?token=` for <img>/<audio> tags (redacted from access logs)."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = token or request.query_params.get("token")
    if not token:
        raise Unauthorized("Missing bearer token")
    return await authorize(request.app.state.ctx, token)


# Documented as what it is: the file in its own type (not application/json); never a redirect.
@router.get(
    "/api/v1/media/{message_id}",
    response_model=None,
    response_class=Response,
    responses={
        200: {
            "description": "The file: an image/audio/video type inline, else an attachment",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def media(message_id: uuid.UUID, request: Request, ctx: CtxDep) -> Response:
    """The file of a media message, fetched from the gateway with the session's key."""
    principal = await _principal(request)
    # A read-only session: it never holds SQLite's write lock, so nothing it calls can wait on it.
    async with ctx.reader() as session:
        msg = await session.get(Message, message_id)
        if msg is None or msg.tenant_id != principal.tenant_id or not msg.media:
            raise NotFound("Media not found")
        row = None if msg.session_id is None else await session.get(WhatsAppSession, msg.session_id)
    await conv_svc.get_visible(ctx, principal, msg.conversation_id)
    media = msg.media
    if msg.direction == "outbound" and media.get("url"):
        # An agent's link: Atende never fetched it and does not redirect to a stored URL.
        raise NotFound("Media sent by link is not kept by Atende")
    if row is None:
        raise NotFound("The session of this media no longer exists")
    ref = MediaRef(
        url=media.get("url"),
        media_id=media.get("media_id"),
        mimetype=media.get("mimetype"),
        filename=media.get("filename"),
    )
    content = await _open(ctx, row, ref)
    cap = ctx.settings.media_max_bytes
    if content.length is not None and content.length > cap:
        await content.aclose()
        raise MediaTooLarge(f"The media file is larger than {cap} bytes", details={"max": cap})
    media_type = served_type(content.mimetype)
    headers = {
        **MEDIA_HEADERS,
        "Content-Disposition": content_disposition(media_type, ref.filename),
    }
    if content.length is not None:
        headers["Content-Length"] = str(content.length)
    body = _stream(content, cap, ctx.settings.media_fetch_timeout_secs)
    return StreamingResponse(body, media_type=media_type, headers=headers)


async def _open(ctx: AppContext, row: WhatsAppSession, ref: MediaRef) -> MediaContent:
    config = with_default_timeout(config_of(row, ctx), ctx.settings.gateway_timeout_secs)
    try:
        return await ctx.provider(row.provider).fetch_media(ctx.http, config, ref)
    except GatewayAddressRefused as exc:
        raise GatewayAddressNotAllowed("The media is not on an address Atende may fetch") from exc
    except GatewayAnswerTooLarge as exc:
        cap = ctx.settings.media_max_bytes
        raise MediaTooLarge(f"The media file is larger than {cap} bytes") from exc
    except ProviderError as exc:
        # exc.reason is Atende's own wording (a gateway's answer is only logged).
        raise GatewayError(f"Could not fetch the media from the gateway: {exc.reason}") from exc


async def _stream(content: MediaContent, cap: int, timeout_secs: float) -> AsyncIterator[bytes]:
    """The file's chunks, aborted past `cap` bytes or `timeout_secs` in all."""
    deadline = time.monotonic() + timeout_secs
    sent = 0
    chunks = content.chunks()
    try:
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except Exception as exc:  # timeout, connection lost, the transport's own cap
                raise MediaAborted(f"media download failed: {type(exc).__name__}") from exc
            sent += len(chunk)
            if sent > cap:
                logger.warning("media download aborted past %d bytes", cap)
                raise MediaAborted(f"the media file is larger than {cap} bytes")
            yield chunk
    finally:
        await chunks.aclose()
        await content.aclose()
