"""Inbound media served through Atende, so a browser never needs a gateway key."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from atende.api.deps import CtxDep
from atende.db.models import Message, WhatsAppSession
from atende.errors import GatewayError, NotFound, Unauthorized
from atende.providers.base import MediaRef, ProviderError
from atende.providers.http import with_default_timeout
from atende.services import conversations as conv_svc
from atende.services.access import authorize
from atende.services.auth import Principal
from atende.services.sessions import config_of

router = APIRouter(tags=["media"])


async def _principal(request: Request) -> Principal:
    """Bearer header, or `?token=` for <img>/<audio> tags (redacted from access logs)."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = token or request.query_params.get("token")
    if not token:
        raise Unauthorized("Missing bearer token")
    return await authorize(request.app.state.ctx, token)


# Documented as what it is: the file in its own type, or a redirect (not application/json).
@router.get(
    "/api/v1/media/{message_id}",
    response_model=None,
    response_class=Response,
    responses={
        200: {
            "description": "The file, in its own media type",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        307: {"description": "Redirect to the media URL an agent sent"},
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
        return RedirectResponse(str(media["url"]))  # the agent's own link
    if row is None:
        raise NotFound("The session of this media no longer exists")
    ref = MediaRef(
        url=media.get("url"),
        media_id=media.get("media_id"),
        mimetype=media.get("mimetype"),
        filename=media.get("filename"),
    )
    try:
        config = with_default_timeout(config_of(row, ctx), ctx.settings.gateway_timeout_secs)
        content = await ctx.provider(row.provider).fetch_media(ctx.http, config, ref)
    except ProviderError as exc:
        raise GatewayError(f"Could not fetch the media from the gateway: {exc.reason}") from exc
    headers = {"Cache-Control": "private, max-age=3600"}
    if media.get("filename"):
        headers["Content-Disposition"] = f'inline; filename="{media["filename"]}"'
    return Response(content.data, media_type=content.mimetype, headers=headers)
