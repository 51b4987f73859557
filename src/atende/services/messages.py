"""Messages: inbound ingest (idempotent), outbound creation, and forward-only status changes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, select

from atende.context import AppContext
from atende.db.models import Contact, Conversation, Message, WhatsAppSession
from atende.db.types import utcnow
from atende.errors import InvalidInput
from atende.events.model import EventType
from atende.phone import digits_of, normalise, variants
from atende.providers.base import InboundMessage
from atende.services import contacts as contacts_svc
from atende.services import conversations as conv_svc
from atende.services import routing
from atende.services.auth import Principal
from atende.services.render import conversation_public, message_public, preview
from atende.services.tx import TenantTx, run_tenant_tx
from atende.types import (
    ConversationStatus,
    Direction,
    MessageStatus,
    MessageType,
    SenderType,
    status_moves_forward,
)

ECHO_MATCH_WINDOW = timedelta(minutes=2)  # how far back a phone echo may match our own send


@dataclass(frozen=True)
class IngestResult:
    message_id: uuid.UUID
    created: bool


def contact_key(item: InboundMessage) -> str:
    """The contact's key: canonical phone; groups and LID-only senders get a prefixed id."""
    if item.is_group:
        return "g:" + digits_of(item.chat_jid.split("@", 1)[0])[:28]
    if item.phone:
        return normalise(item.phone)
    return "lid:" + digits_of(item.chat_jid.split("@", 1)[0])[:27]


async def emit_created(tx: TenantTx, msg: Message, conv: Conversation, contact: Contact) -> None:
    await tx.emit(
        EventType.MESSAGE_CREATED,
        {"message": message_public(msg), "conversation": conversation_public(conv, contact)},
        conversation_id=conv.id,
        visible_to=conv_svc.visible_to(conv),
    )


def _touch(conv: Conversation, msg: Message) -> None:
    conv.last_message = preview(msg)
    conv.last_message_time = msg.created_at
    conv.updated_at = utcnow()


async def ingest_inbound(
    ctx: AppContext, session_row: WhatsAppSession, item: InboundMessage
) -> IngestResult:
    """Store one message seen on a customer's chat, once, however often it is delivered."""
    key = contact_key(item)

    async def work(tx: TenantTx) -> IngestResult:
        existing = await _id_by_wamid(tx, session_row.id, item.provider_message_id)
        if existing is not None:
            return IngestResult(existing, created=False)
        push_name = None if item.from_me else item.push_name
        contact, conv = await _contact_and_open_conversation(tx, key, session_row.id)
        if contact is not None:
            contacts_svc.refresh(contact, wa_jid=item.chat_jid, push_name=push_name)
        else:
            contact, _ = await contacts_svc.get_or_create_contact(
                tx, phone=key, wa_jid=item.chat_jid, push_name=push_name
            )
        if conv is None:
            conv, _ = await conv_svc.get_or_open(tx, contact=contact, session_id=session_row.id)
        if not item.from_me and conv.session_id != session_row.id:
            # The customer wrote to this number: the answer must come from it, not from the
            # number the conversation started on (services.routing sends through it).
            conv.session_id = session_row.id
        if item.from_me:
            echo = await _match_echo(tx, conv, item)
            if echo is not None:
                return IngestResult(echo.id, created=False)
        # No flush here: the row's id and defaults are set in Python, so the INSERT rides the
        # transaction's single flush in `TenantTx.finish` with the conversation's UPDATE.
        msg = _inbound_row(tx.tenant_id, session_row.id, conv.id, item)
        tx.session.add(msg)
        _touch(conv, msg)
        if not item.from_me:
            conv.unread_count += 1
        await emit_created(tx, msg, conv, contact)
        return IngestResult(msg.id, created=True)

    return await run_tenant_tx(ctx, session_row.tenant_id, work)


def _inbound_row(
    tenant_id: uuid.UUID, session_id: uuid.UUID, conv_id: uuid.UUID, item: InboundMessage
) -> Message:
    media: dict[str, Any] | None = None
    if item.media is not None:
        media = {
            "url": item.media.url,
            "media_id": item.media.media_id,
            "mimetype": item.media.mimetype,
            "filename": item.media.filename,
            "caption": item.media.caption,
        }
    return Message(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        conversation_id=conv_id,
        session_id=session_id,
        direction=Direction.OUTBOUND.value if item.from_me else Direction.INBOUND.value,
        sender_type=SenderType.AGENT.value if item.from_me else SenderType.CONTACT.value,
        message_type=item.message_type.value,
        text=item.text,
        media=media,
        status=MessageStatus.SENT.value if item.from_me else MessageStatus.DELIVERED.value,
        whatsapp_message_id=item.provider_message_id,
        push_name=item.push_name,
        created_at=utcnow(),
        sent_at=item.timestamp,
    )


async def _contact_and_open_conversation(
    tx: TenantTx, phone: str, session_id: uuid.UUID
) -> tuple[Contact | None, Conversation | None]:
    """The steady state of ingest in one query: the known contact and its open conversation.
    Either may be missing; the caller then takes the slower create-or-open paths."""
    stmt = (
        select(Contact, Conversation)
        .outerjoin(
            Conversation,
            and_(
                Conversation.contact_id == Contact.id,
                Conversation.status != ConversationStatus.CLOSED.value,
            ),
        )
        .where(Contact.tenant_id == tx.tenant_id, Contact.phone.in_(variants(phone)))
        .limit(1)
    )
    row = (await tx.session.execute(stmt)).first()
    if row is None:
        return None, None
    contact, conv = row[0], row[1]
    if conv is not None and conv.session_id is None:
        conv.session_id = session_id
    return contact, conv


async def _id_by_wamid(tx: TenantTx, session_id: uuid.UUID, wamid: str) -> uuid.UUID | None:
    """The dedupe probe of every inbound webhook: the id alone, no ORM object to build."""
    stmt = select(Message.id).where(
        Message.session_id == session_id, Message.whatsapp_message_id == wamid
    )
    return (await tx.session.execute(stmt)).scalar_one_or_none()


async def _by_wamid(tx: TenantTx, session_id: uuid.UUID, wamid: str) -> Message | None:
    stmt = select(Message).where(
        Message.session_id == session_id, Message.whatsapp_message_id == wamid
    )
    return (await tx.session.execute(stmt)).scalar_one_or_none()


async def _match_echo(tx: TenantTx, conv: Conversation, item: InboundMessage) -> Message | None:
    """A gateway may echo our own API send (`send.message`, `message.any`) before the outbox
    has stored the gateway's id; attach the id to our row instead of storing a copy.

    With two of our messages of the same text still waiting for their ids ("ok", "ok"), the
    echo cannot say which one it is: it is still ours, so nothing is stored, and each send
    records its own id when the gateway answers."""
    stmt = (
        select(Message)
        .where(
            Message.conversation_id == conv.id,
            Message.direction == Direction.OUTBOUND.value,
            Message.whatsapp_message_id.is_(None),
            Message.text == item.text,
            Message.created_at >= utcnow() - ECHO_MATCH_WINDOW,
        )
        .order_by(Message.created_at)
        .limit(2)
    )
    candidates = (await tx.session.execute(stmt)).scalars().all()
    if not candidates:
        return None
    if len(candidates) == 1:
        candidates[0].whatsapp_message_id = item.provider_message_id
    return candidates[0]


@dataclass(frozen=True)
class OutboundRequest:
    text: str | None
    message_type: MessageType = MessageType.TEXT
    media_url: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    caption: str | None = None


Gate = Callable[[WhatsAppSession], Awaitable[None]]


async def create_outbound(
    ctx: AppContext,
    *,
    principal: Principal,
    request: OutboundRequest,
    destination: routing.Destination,
    gate: Gate,
) -> dict[str, Any]:
    """Store an agent's message as `pending` (the outbox sends it) and tell every agent.

    `services.routing` decides the conversation and the session inside this transaction, so
    what is checked (visibility, the number) is what is written to; `gate` then refuses a
    send through a disconnected number or past the rate limit, before anything is kept."""
    if request.message_type == MessageType.TEXT and not request.text:
        raise InvalidInput("Message text must not be empty", details={"field": "text"})
    if request.message_type != MessageType.TEXT and not request.media_url:
        raise InvalidInput("A media message needs media_url", details={"field": "media_url"})

    async def work(tx: TenantTx) -> dict[str, Any]:
        route = await routing.resolve(tx, principal, destination)
        await gate(route.session)
        conv, contact = route.conversation, route.contact
        if route.reopened:
            await conv_svc.emit_updated(tx, conv, contact, "reopened")
        msg = Message(
            tenant_id=principal.tenant_id,
            conversation_id=conv.id,
            session_id=route.session.id,
            direction=Direction.OUTBOUND.value,
            sender_type=SenderType.AGENT.value,
            sender_id=principal.user_id,
            message_type=request.message_type.value,
            text=request.text,
            media=_outbound_media(request),
            status=MessageStatus.PENDING.value,
            to_jid=contact.wa_jid,
            created_at=utcnow(),
            next_attempt_at=utcnow(),
        )
        tx.session.add(msg)
        await tx.session.flush()
        _touch(conv, msg)
        await emit_created(tx, msg, conv, contact)
        return {
            "message": message_public(msg),
            "conversation": conversation_public(conv, contact),
        }

    result = await run_tenant_tx(ctx, principal.tenant_id, work)
    ctx.outbox_wakeup.set()
    return result


def _outbound_media(request: OutboundRequest) -> dict[str, Any] | None:
    if request.message_type == MessageType.TEXT:
        return None
    return {
        "url": request.media_url,
        "mimetype": request.mimetype,
        "filename": request.filename,
        "caption": request.caption,
    }


class StatusOutcome(StrEnum):
    """What a gateway ack did."""

    MOVED = "moved"  # the message's status moved forward
    STALE = "stale"  # a known message, but the ack is not forward (late or repeated)
    UNKNOWN = "unknown"  # no message has this id: not ours to track, ignore it
    EARLY = "early"  # no message has this id yet, but a send of this session is in flight:
    # the gateway's ack may have overtaken our storing of its id, so ask for a redelivery


async def apply_status(
    ctx: AppContext,
    *,
    session_row: WhatsAppSession,
    wamid: str,
    status: MessageStatus,
    error: str | None = None,
) -> StatusOutcome:
    """Move a message's status forward by a gateway ack (never backward)."""

    async def work(tx: TenantTx) -> StatusOutcome:
        msg = await _by_wamid(tx, session_row.id, wamid)
        if msg is None:
            in_flight = await _send_in_flight(tx, session_row.id)
            return StatusOutcome.EARLY if in_flight else StatusOutcome.UNKNOWN
        moved = await _advance(tx, msg, status, error)
        return StatusOutcome.MOVED if moved else StatusOutcome.STALE

    return await run_tenant_tx(ctx, session_row.tenant_id, work)


async def _send_in_flight(tx: TenantTx, session_id: uuid.UUID) -> bool:
    """Whether the outbox has claimed a message of this session whose gateway id is not stored
    yet (being sent, or waiting for a retry)."""
    stmt = (
        select(Message.id)
        .where(
            Message.session_id == session_id,
            Message.direction == Direction.OUTBOUND.value,
            Message.status == MessageStatus.PENDING.value,
            Message.whatsapp_message_id.is_(None),
            Message.attempts > 0,
            Message.next_attempt_at > utcnow(),
        )
        .limit(1)
    )
    return (await tx.session.execute(stmt)).first() is not None


async def _advance(tx: TenantTx, msg: Message, status: MessageStatus, error: str | None) -> bool:
    if not status_moves_forward(MessageStatus(msg.status), status):
        return False
    msg.status = status.value
    if status == MessageStatus.FAILED:
        msg.error = error or "failed"
    if status == MessageStatus.SENT and msg.sent_at is None:
        msg.sent_at = utcnow()
    conv = await tx.session.get(Conversation, msg.conversation_id)
    contact = None if conv is None else await tx.session.get(Contact, conv.contact_id)
    await tx.emit(
        EventType.MESSAGE_STATUS,
        {
            "message_id": str(msg.id),
            "conversation_id": str(msg.conversation_id),
            "phone_number": None if contact is None else contact.phone,
            "status": status.value,
            "error": msg.error if status == MessageStatus.FAILED else None,
            "whatsapp_message_id": msg.whatsapp_message_id,
            "direction": msg.direction,
        },
        conversation_id=msg.conversation_id,
        visible_to=None if conv is None else conv_svc.visible_to(conv),
    )
    return True


async def mark_sent(
    ctx: AppContext, *, tenant_id: uuid.UUID, message_id: uuid.UUID, wamid: str, jid: str | None
) -> None:
    """The gateway accepted the message: remember its id (its acks find the message by it)."""

    async def work(tx: TenantTx) -> None:
        msg = await tx.session.get(Message, message_id)
        if msg is None:
            return
        echo = await _by_wamid(tx, msg.session_id, wamid) if msg.session_id else None
        if echo is not None and echo.id != msg.id:
            if echo.sender_id is None and echo.status != MessageStatus.PENDING.value:
                await tx.session.delete(echo)  # a phone echo stored before we knew the id
            else:
                echo.whatsapp_message_id = None  # an agent's message the echo was pinned on
            await tx.session.flush()
        msg.whatsapp_message_id = wamid
        msg.next_attempt_at = None
        if jid:
            msg.to_jid = jid
            await _remember_jid(tx, msg, jid)
        await _advance(tx, msg, MessageStatus.SENT, None)

    await run_tenant_tx(ctx, tenant_id, work)


async def _remember_jid(tx: TenantTx, msg: Message, jid: str) -> None:
    """Keep the address the gateway resolved (number check, Cloud's `wa_id`) on the contact, so
    later sends use it verbatim and skip the check."""
    conv = await tx.session.get(Conversation, msg.conversation_id)
    contact = None if conv is None else await tx.session.get(Contact, conv.contact_id)
    if contact is not None and contact.wa_jid != jid:
        contact.wa_jid = jid


async def mark_failed(
    ctx: AppContext, *, tenant_id: uuid.UUID, message_id: uuid.UUID, reason: str
) -> None:
    async def work(tx: TenantTx) -> None:
        msg = await tx.session.get(Message, message_id)
        if msg is None:
            return
        msg.next_attempt_at = None
        await _advance(tx, msg, MessageStatus.FAILED, reason[:1000])

    await run_tenant_tx(ctx, tenant_id, work)


async def page_oldest_first(
    ctx: AppContext, conversation_id: uuid.UUID, *, limit: int, page: int
) -> tuple[list[Message], int]:
    """Seed 000 paging: page 1 holds the newest `limit` messages, each page oldest first."""
    async with ctx.reader() as session:
        total = int(
            (
                await session.execute(
                    select(func.count(Message.id)).where(Message.conversation_id == conversation_id)
                )
            ).scalar_one()
        )
        stmt = (
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(limit)
            .offset((page - 1) * limit)
        )
        rows = list((await session.execute(stmt)).scalars())
    rows.reverse()
    return rows, total


async def before(
    ctx: AppContext,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    offset: int = 0,
    before_id: uuid.UUID | None = None,
) -> tuple[list[Message], bool]:
    """Keyset page of older messages (oldest first) ending before `before_id`."""
    async with ctx.reader() as session:
        stmt = select(Message).where(Message.conversation_id == conversation_id)
        if before_id is not None:
            anchor = await session.get(Message, before_id)
            if anchor is None or anchor.conversation_id != conversation_id:
                raise InvalidInput("`before` is not a message of this conversation")
            stmt = stmt.where(
                (Message.created_at < anchor.created_at)
                | ((Message.created_at == anchor.created_at) & (Message.id < anchor.id))
            )
        stmt = stmt.order_by(Message.created_at.desc(), Message.id.desc())
        rows = list((await session.execute(stmt.limit(limit + 1).offset(offset))).scalars())
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return rows, has_more
