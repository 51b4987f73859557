"""Gateway webhook endpoints (SPEC §3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from atende import metrics, webhooks
from atende.api.deps import JSON_ERRORS_OF_TEXT_ROUTE, CtxDep
from atende.context import AppContext
from atende.db.models import WEBHOOK_TOKEN_PREFIX
from atende.errors import NotFound, Unauthorized
from atende.providers.base import Provider
from atende.providers.common import secret_equals
from atende.services import sessions as sessions_svc

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


async def _timed(
    ctx: AppContext,
    provider: Provider,
    raw: bytes,
    request: Request,
    token: str | None = None,
) -> webhooks.WebhookOutcome:
    with metrics.timed(metrics.WEBHOOK_LATENCY, provider.name.value):
        return await webhooks.handle(ctx, provider, raw, request.headers, token=token)


def _token(segment: str) -> str | None:
    """A session token (`wh_…`), or None for Evolution's per-event suffix (`messages-upsert`)."""
    return segment if segment.startswith(WEBHOOK_TOKEN_PREFIX) else None


@router.post("/whatsapp")
async def any_provider(request: Request, ctx: CtxDep) -> dict[str, Any]:
    """Any supported gateway's webhook; the provider is told apart by the body's shape."""
    raw = await request.body()
    provider = webhooks.detect(ctx, webhooks.decode_json(raw))
    return (await _timed(ctx, provider, raw, request)).to_dict()


@router.post("/{provider}")
async def explicit(provider: str, request: Request, ctx: CtxDep) -> dict[str, Any]:
    """One gateway's webhook (sandbox, evolution, waha, cloud, connection_service); the body
    names the session."""
    raw = await request.body()
    outcome = await _timed(ctx, ctx.provider(provider), raw, request)
    return outcome.to_dict()


@router.post("/{provider}/{token_or_event}")
async def own_or_per_event(
    provider: str, token_or_event: str, request: Request, ctx: CtxDep
) -> dict[str, Any]:
    """A session's own webhook URL, `/{provider}/{session_token}` (shown to its admins), or
    Evolution's per-event sub-paths (`webhook_by_events`), e.g. `/messages-upsert`."""
    gateway = ctx.provider(provider)
    raw = await request.body()
    outcome = await _timed(ctx, gateway, raw, request, _token(token_or_event))
    return outcome.to_dict()


@router.post("/{provider}/{session_token}/{event_slug}")
async def own_per_event(
    provider: str, session_token: str, event_slug: str, request: Request, ctx: CtxDep
) -> dict[str, Any]:
    """Evolution's per-event sub-paths of a session's own URL."""
    gateway = ctx.provider(provider)
    if _token(session_token) is None:
        raise webhooks.rejected(gateway, "no session token in the path")
    raw = await request.body()
    outcome = await _timed(ctx, gateway, raw, request, session_token)
    return outcome.to_dict()


@router.get("/{provider}", response_class=PlainTextResponse, responses=JSON_ERRORS_OF_TEXT_ROUTE)
async def verification(provider: str, request: Request, ctx: CtxDep) -> str:
    """Meta Cloud API's verification handshake (hub.mode / hub.verify_token / hub.challenge)."""
    if provider not in ("cloud", "whatsapp"):
        raise NotFound("Only the Cloud API uses a GET verification handshake")
    params = request.query_params
    token = params.get("hub.verify_token", "")
    if params.get("hub.mode") != "subscribe" or not token:
        raise Unauthorized("Verification failed")
    if not await webhooks.cloud_verify_token_known(ctx, token):
        raise Unauthorized("Verification failed")
    return params.get("hub.challenge", "")


@router.get(
    "/{provider}/{session_token}",
    response_class=PlainTextResponse,
    responses=JSON_ERRORS_OF_TEXT_ROUTE,
)
async def own_verification(provider: str, session_token: str, request: Request, ctx: CtxDep) -> str:
    """Meta's handshake on a Cloud session's own URL: that session's verify token only."""
    if provider != "cloud":
        raise NotFound("Only the Cloud API uses a GET verification handshake")
    params = request.query_params
    token = params.get("hub.verify_token", "")
    row = await sessions_svc.find_for_token(ctx, provider, session_token)
    expected = str((row.options or {}).get("verify_token") or "") if row is not None else ""
    if params.get("hub.mode") != "subscribe" or not secret_equals(token, expected) or not token:
        raise Unauthorized("Verification failed")
    return params.get("hub.challenge", "")
