"""Agent actions shared by REST and the sockets: send, mark read, typing.

Every send goes through the same checks in the same order: input (phone, text), the conversation
and WhatsApp number it goes to (services.routing: visible to the caller, the conversation's own
number), that number being connected, then the rate limit (so a refused send does not use up the
quota).
"""

from __future__ import annotations

import uuid
from typing import Any

from atende.context import AppContext
from atende.db.models import Conversation, WhatsAppSession
from atende.errors import InvalidInput, NotFound
from atende.events.model import EventType
from atende.phone import normalise
from atende.sanitize import clean_text
from atende.services import conversations as conv_svc
from atende.services import messages as messages_svc
from atende.services import routing
from atende.services import sessions as sessions_svc
from atende.services.auth import Principal
from atende.services.tx import TenantTx, run_tenant_tx
from atende.types import MessageType


def _clean(ctx: AppContext, text: str) -> str:
    cleaned = clean_text(text, max_chars=ctx.settings.max_text_chars)
    if not cleaned:
        raise InvalidInput("Message text is empty after removing HTML", details={"field": "text"})
    return cleaned


def _gate(ctx: AppContext, principal: Principal) -> messages_svc.Gate:
    """The send's own WhatsApp number must be connected (another one being connected does not
    help: the reply would leave from the wrong number); then the rate limit is counted."""

    async def gate(session_row: WhatsAppSession) -> None:
        sessions_svc.ensure_connected(session_row)
        if ctx.limiter is not None:
            await ctx.limiter.hit(str(principal.tenant_id))

    return gate


async def send_text_to_phone(
    ctx: AppContext,
    principal: Principal,
    phone_number: str,
    text: str,
    session_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    phone = normalise(phone_number)
    cleaned = _clean(ctx, text)
    return await messages_svc.create_outbound(
        ctx,
        principal=principal,
        request=messages_svc.OutboundRequest(text=cleaned),
        destination=routing.ToPhone(phone, session_id),
        gate=_gate(ctx, principal),
    )


async def send_to_conversation(
    ctx: AppContext,
    principal: Principal,
    conversation_id: uuid.UUID,
    request: messages_svc.OutboundRequest,
    session_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    if request.text is not None:
        request = messages_svc.OutboundRequest(
            text=_clean(ctx, request.text)
            if request.message_type == MessageType.TEXT
            else clean_text(request.text, max_chars=ctx.settings.max_text_chars),
            message_type=request.message_type,
            media_url=request.media_url,
            mimetype=request.mimetype,
            filename=request.filename,
            caption=None
            if request.caption is None
            else clean_text(request.caption, max_chars=ctx.settings.max_text_chars),
        )
    return await messages_svc.create_outbound(
        ctx,
        principal=principal,
        request=request,
        destination=routing.ToConversation(conversation_id, session_id),
        gate=_gate(ctx, principal),
    )


async def _conversation_by_phone(
    ctx: AppContext, principal: Principal, phone_number: str
) -> Conversation:
    found = await conv_svc.find_by_phone(ctx, principal, normalise(phone_number))
    if found is None:
        raise NotFound(
            "No conversation with this phone number", details={"phone_number": phone_number[:40]}
        )
    return found[0]


async def mark_read_by_phone(ctx: AppContext, principal: Principal, phone_number: str) -> None:
    conv = await _conversation_by_phone(ctx, principal, phone_number)
    await conv_svc.mark_read(ctx, principal, conv.id)


async def agent_typing(
    ctx: AppContext, principal: Principal, phone_number: str, is_typing: bool
) -> None:
    conv = await _conversation_by_phone(ctx, principal, phone_number)
    await typing_event(ctx, principal, conv.id, is_typing)


async def typing_event(
    ctx: AppContext, principal: Principal, conversation_id: uuid.UUID, is_typing: bool
) -> None:
    async def work(tx: TenantTx) -> None:
        conv, contact = await conv_svc.load(tx, principal, conversation_id)
        await tx.emit(
            EventType.TYPING,
            {
                "conversation_id": str(conv.id),
                "contact_id": str(contact.id),
                "phone_number": contact.phone,
                "is_typing": is_typing,
                "from": "agent",
                "user_id": str(principal.user_id),
            },
            conversation_id=conv.id,
            visible_to=conv_svc.visible_to(conv),
        )

    await run_tenant_tx(ctx, principal.tenant_id, work)
