"""WhatsApp sessions: seed 003's gateway routes and an admin resource per tenant."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from atende.api.deps import AdminPrincipal, CtxDep, CurrentPrincipal, same_tenant
from atende.services import chat as chat_svc
from atende.services import connection as connection_svc
from atende.services import sessions as sessions_svc
from atende.services.messages import OutboundRequest
from atende.services.render import session_admin, session_public
from atende.types import ProviderName

router = APIRouter(tags=["whatsapp sessions"])


class ConnectIn(BaseModel):
    tenant_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None


class SessionIn(BaseModel):
    provider: ProviderName
    name: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(default=None, max_length=500)
    api_key: str | None = Field(default=None, max_length=500)
    webhook_secret: str | None = Field(default=None, max_length=500)
    options: dict[str, str] = Field(default_factory=dict)


class SendIn(BaseModel):
    message: str | None = Field(default=None, max_length=100_000)
    text: str | None = Field(default=None, max_length=100_000)
    content: str | None = Field(default=None, max_length=100_000)
    session_id: uuid.UUID | None = None  # only for a conversation without a WhatsApp number yet


def _status_body(row: Any, public: dict[str, Any] | None = None) -> dict[str, Any]:
    public = public or session_public(row)
    return {
        "success": True,
        "connected": public["connected"],
        "status": public["state"],
        "qr_code": public["qr"],
        "session": public,
    }


@router.post("/api/whatsapp/connect")
async def connect(body: ConnectIn, principal: AdminPrincipal, ctx: CtxDep) -> dict[str, Any]:
    """Start (or create) the gateway session and return its QR code as a data URL."""
    if body.tenant_id is not None:
        same_tenant(principal, body.tenant_id)
    row = await connection_svc.owned_session(ctx, principal, body.session_id)
    row = await connection_svc.connect(ctx, principal, row)
    return _status_body(row, session_admin(row, ctx.settings.public_url))


@router.get("/api/whatsapp/status/{tenant_id}")
async def status(tenant_id: uuid.UUID, principal: CurrentPrincipal, ctx: CtxDep) -> dict[str, Any]:
    """The tenant's WhatsApp connection state, refreshed from the gateway."""
    same_tenant(principal, tenant_id)
    row = await connection_svc.owned_session(ctx, principal, None)
    return _status_body(await connection_svc.refresh_status(ctx, row))


@router.delete("/api/whatsapp/disconnect/{tenant_id}")
async def disconnect(
    tenant_id: uuid.UUID, principal: AdminPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Log the tenant's WhatsApp out of the gateway."""
    same_tenant(principal, tenant_id)
    row = await connection_svc.owned_session(ctx, principal, None)
    row = await connection_svc.disconnect(ctx, principal, row)
    return _status_body(row, session_admin(row, ctx.settings.public_url))


@router.post("/api/conversations/{conversation_id}/send-message")
async def send_message(
    conversation_id: uuid.UUID, body: SendIn, principal: CurrentPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Seed 003's send: queue a text message in a conversation."""
    text = body.message if body.message is not None else body.text or body.content or ""
    result = await chat_svc.send_to_conversation(
        ctx, principal, conversation_id, OutboundRequest(text=text), body.session_id
    )
    return {"success": True, "message": result["message"]}


@router.get("/api/v1/whatsapp/sessions")
async def list_sessions(principal: AdminPrincipal, ctx: CtxDep) -> list[dict[str, Any]]:
    """The tenant's WhatsApp sessions with their webhook URLs (never their keys)."""
    rows = await sessions_svc.list_for_tenant(ctx, principal.tenant_id)
    return [session_admin(r, ctx.settings.public_url) for r in rows]


@router.post("/api/v1/whatsapp/sessions", status_code=201)
async def create_session(body: SessionIn, principal: AdminPrincipal, ctx: CtxDep) -> dict[str, Any]:
    """Add a gateway session to the tenant."""
    row = await sessions_svc.create_session(
        ctx,
        tenant_id=principal.tenant_id,
        provider=body.provider,
        name=body.name,
        base_url=body.base_url,
        api_key=body.api_key,
        webhook_secret=body.webhook_secret,
        options=dict(body.options),
    )
    created = session_admin(row, ctx.settings.public_url)
    if not body.webhook_secret:
        # Shown once, here: the admin needs it to point a gateway at us by hand.
        created["webhook_secret"] = row.webhook_secret
    return created


@router.post("/api/v1/whatsapp/sessions/{session_id}/connect")
async def connect_one(
    session_id: uuid.UUID, principal: AdminPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Start this session at its gateway; answers with the QR (or connected)."""
    row = await connection_svc.owned_session(ctx, principal, session_id)
    row = await connection_svc.connect(ctx, principal, row)
    return session_admin(row, ctx.settings.public_url)


@router.post("/api/v1/whatsapp/sessions/{session_id}/disconnect")
async def disconnect_one(
    session_id: uuid.UUID, principal: AdminPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Log this session out."""
    row = await connection_svc.owned_session(ctx, principal, session_id)
    row = await connection_svc.disconnect(ctx, principal, row)
    return session_admin(row, ctx.settings.public_url)
