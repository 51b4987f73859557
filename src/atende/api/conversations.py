"""Seed 001 REST: /api/v1/conversations (lists are JSON arrays; the total is in X-Total-Count)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from atende.api.deps import MAX_OFFSET, CtxDep, CurrentPrincipal
from atende.services import accounts
from atende.services import chat as chat_svc
from atende.services import conversations as conv_svc
from atende.services import messages as messages_svc
from atende.services.render import conversation_public, message_public, user_public
from atende.types import ConversationStatus, MessageType

router = APIRouter(prefix="/api/v1", tags=["conversations (seed 001)"])


class MessageIn(BaseModel):
    content: str | None = Field(default=None, max_length=100_000)
    message_type: MessageType = MessageType.TEXT
    media_url: str | None = Field(default=None, max_length=2000)
    mimetype: str | None = Field(default=None, max_length=200)
    filename: str | None = Field(default=None, max_length=300)
    caption: str | None = Field(default=None, max_length=100_000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    session_id: uuid.UUID | None = None  # only for a conversation without a WhatsApp number yet


class AssignIn(BaseModel):
    user_id: uuid.UUID | None = None


class StatusIn(BaseModel):
    status: ConversationStatus


@router.get("/conversations")
async def list_conversations(
    principal: CurrentPrincipal,
    ctx: CtxDep,
    response: Response,
    status: ConversationStatus | None = None,
    search: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> list[dict[str, Any]]:
    """Conversations the caller may see, most recent first, filtered by status and search."""
    rows, total = await conv_svc.list_for(
        ctx,
        principal,
        conv_svc.ConversationQuery(
            status=status, search=search or None, limit=limit, offset=offset
        ),
    )
    # Past COUNT_CAP the header says COUNT_CAP and X-Total-Count-Capped says it is a floor.
    response.headers["X-Total-Count"] = str(min(total, conv_svc.COUNT_CAP))
    if total > conv_svc.COUNT_CAP:
        response.headers["X-Total-Count-Capped"] = "true"
    return [conversation_public(conv, contact) for conv, contact in rows]


@router.get("/conversations/{conversation_id}")
async def get_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """One conversation with its contact / lead."""
    conv, contact = await conv_svc.get_visible(ctx, principal, conversation_id)
    return conversation_public(conv, contact)


@router.get("/conversations/{conversation_id}/messages")
async def list_messages(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    ctx: CtxDep,
    response: Response,
    limit: int = Query(100, ge=1, le=200),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    before: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """Messages oldest first; `before` (a message id) pages back through history."""
    await conv_svc.get_visible(ctx, principal, conversation_id)
    rows, has_more = await messages_svc.before(
        ctx, conversation_id, limit=limit, offset=offset, before_id=before
    )
    response.headers["X-Has-More"] = "true" if has_more else "false"
    return [message_public(m) for m in rows]


@router.post("/conversations/{conversation_id}/messages")
async def send_message(
    conversation_id: uuid.UUID, body: MessageIn, principal: CurrentPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Queue an agent's message; it is answered `pending` and its status follows live."""
    request = messages_svc.OutboundRequest(
        text=body.content,
        message_type=body.message_type,
        media_url=body.media_url,
        mimetype=body.mimetype,
        filename=body.filename,
        caption=body.caption,
    )
    result = await chat_svc.send_to_conversation(
        ctx, principal, conversation_id, request, body.session_id
    )
    message: dict[str, Any] = result["message"]
    return message


@router.post("/conversations/{conversation_id}/read")
async def mark_read(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Clear the conversation's unread count."""
    await conv_svc.mark_read(ctx, principal, conversation_id)
    return {"ok": True}


@router.post("/conversations/{conversation_id}/assign")
async def assign(
    conversation_id: uuid.UUID, body: AssignIn, principal: CurrentPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Assign to a user (agents: only to themselves), or unassign with `user_id: null`."""
    return await conv_svc.assign(ctx, principal, conversation_id, body.user_id)


@router.post("/conversations/{conversation_id}/unassign")
async def unassign(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Put the conversation back in the shared queue."""
    return await conv_svc.assign(ctx, principal, conversation_id, None)


@router.post("/conversations/{conversation_id}/status")
async def change_status(
    conversation_id: uuid.UUID, body: StatusIn, principal: CurrentPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Set active / waiting / assigned / closed."""
    return await conv_svc.set_status(ctx, principal, conversation_id, body.status)


@router.post("/conversations/{conversation_id}/typing")
async def typing(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    ctx: CtxDep,
    is_typing: Literal["true", "false"] = "true",
) -> dict[str, Any]:
    """Tell the other agents this agent is typing here."""
    await chat_svc.typing_event(ctx, principal, conversation_id, is_typing == "true")
    return {"ok": True}


@router.get("/users")
async def users(principal: CurrentPrincipal, ctx: CtxDep) -> list[dict[str, Any]]:
    """The tenant's users (to pick an assignee)."""
    return [user_public(u) for u in await accounts.list_users(ctx, tenant_id=principal.tenant_id)]
