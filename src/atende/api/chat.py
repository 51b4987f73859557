"""Seed 000 REST: /api/tenants/{tenant_id}/chat/..."""

from __future__ import annotations

import math
import uuid
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from atende.api.deps import MAX_OFFSET, MAX_PAGE, CtxDep, CurrentPrincipal, same_tenant
from atende.errors import NotFound, utc_iso
from atende.phone import normalise
from atende.services import chat as chat_svc
from atende.services import conversations as conv_svc
from atende.services import messages as messages_svc
from atende.services.render import contact_name

router = APIRouter(prefix="/api/tenants/{tenant_id}/chat", tags=["chat (seed 000)"])


class SendIn(BaseModel):
    phone_number: str = Field(max_length=64)
    text: str = Field(max_length=100_000)  # the 4,096 limit is checked with a clear error
    # Which WhatsApp number to send from, when the phone has no conversation yet and the tenant
    # has several (else SESSION_REQUIRED lists them); a conversation's own number otherwise.
    session_id: uuid.UUID | None = None


@router.get("/conversations")
async def conversations(
    tenant_id: uuid.UUID,
    principal: CurrentPrincipal,
    ctx: CtxDep,
    limit: int = Query(100, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """The tenant's conversations, most recent first."""
    same_tenant(principal, tenant_id)
    rows, total = await conv_svc.list_for(
        ctx, principal, conv_svc.ConversationQuery(limit=limit, offset=offset)
    )
    return {
        "conversations": [
            {
                "id": str(conv.id),
                "phone_number": contact.phone,
                "name": contact_name(contact),
                "unread_count": conv.unread_count,
                "last_message": conv.last_message,
                "last_message_time": None
                if conv.last_message_time is None
                else utc_iso(conv.last_message_time),
                "profile_picture_url": contact.profile_picture_url,
                "status": conv.status,
                "assignee_id": None if conv.assignee_id is None else str(conv.assignee_id),
            }
            for conv, contact in rows
        ],
        "total": min(total, conv_svc.COUNT_CAP),
        "total_capped": total > conv_svc.COUNT_CAP,
    }


@router.get("/conversations/{phone_number}/messages")
async def messages(
    tenant_id: uuid.UUID,
    phone_number: str,
    principal: CurrentPrincipal,
    ctx: CtxDep,
    limit: int = Query(50, ge=1, le=100),
    page: int = Query(1, ge=1, le=MAX_PAGE),
) -> dict[str, Any]:
    """Messages with this phone number, oldest first; page 1 is the most recent page."""
    same_tenant(principal, tenant_id)
    found = await conv_svc.find_by_phone(ctx, principal, normalise(phone_number))
    if found is None:
        raise NotFound("No conversation with this phone number")
    conv, contact = found
    rows, total = await messages_svc.page_oldest_first(ctx, conv.id, limit=limit, page=page)
    return {
        "messages": [
            {
                "id": str(m.id),
                "from": "me" if m.direction == "outbound" else contact.phone,
                "text": m.text or (m.media or {}).get("caption") or "",
                "timestamp": utc_iso(m.created_at),
                "from_me": m.direction == "outbound",
                "push_name": m.push_name,
                "status": m.status,
                "message_type": m.message_type,
            }
            for m in rows
        ],
        "total": total,
        "page": page,
        "pages": max(1, math.ceil(total / limit)),
    }


@router.post("/send")
async def send(
    tenant_id: uuid.UUID, body: SendIn, principal: CurrentPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Queue a text message to a phone number; delivery status follows on the sockets."""
    same_tenant(principal, tenant_id)
    result = await chat_svc.send_text_to_phone(
        ctx, principal, body.phone_number, body.text, body.session_id
    )
    msg = result["message"]
    return {"message_id": msg["id"], "timestamp": msg["created_at"], "success": True}
