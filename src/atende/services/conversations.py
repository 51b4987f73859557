"""Conversations: open one per contact, list them for a user, read / assign / change status."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from atende.context import AppContext
from atende.db.models import Contact, Conversation, Message, User, WhatsAppSession
from atende.db.types import utcnow
from atende.errors import Conflict, Forbidden, InvalidInput, NotFound
from atende.events.model import EventType
from atende.phone import variants
from atende.services.auth import Principal
from atende.services.render import conversation_public
from atende.services.tx import TenantTx, run_tenant_tx
from atende.types import ConversationStatus, SessionState


def visible_to(conv: Conversation) -> uuid.UUID | None:
    """Agents see unassigned conversations and their own (seed 004: USER vê só seus chats)."""
    return conv.assignee_id


def can_see(principal: Principal, conv: Conversation) -> bool:
    return principal.is_admin or conv.assignee_id in (None, principal.user_id)


async def get_or_open(
    tx: TenantTx, *, contact: Contact, session_id: uuid.UUID | None
) -> tuple[Conversation, bool]:
    """The contact's open conversation, or a new one (the partial unique index settles races)."""
    stmt = select(Conversation).where(
        Conversation.tenant_id == tx.tenant_id,
        Conversation.contact_id == contact.id,
        Conversation.status != ConversationStatus.CLOSED.value,
    )
    conv = (await tx.session.execute(stmt)).scalar_one_or_none()
    if conv is not None:
        if session_id is not None and conv.session_id is None:
            conv.session_id = session_id
        return conv, False
    conv = Conversation(
        tenant_id=tx.tenant_id,
        contact_id=contact.id,
        session_id=session_id,
        status=ConversationStatus.ACTIVE.value,
        unread_count=0,
        last_message_time=utcnow(),
    )
    tx.session.add(conv)
    await tx.session.flush()
    return conv, True


async def emit_updated(
    tx: TenantTx, conv: Conversation, contact: Contact, change: str, **extra: Any
) -> None:
    await tx.emit(
        EventType.CONVERSATION_UPDATED,
        {"conversation": conversation_public(conv, contact), "change": change, **extra},
        conversation_id=conv.id,
        visible_to=visible_to(conv),
    )


def _visible_filter(stmt: Any, principal: Principal) -> Any:
    stmt = stmt.where(Conversation.tenant_id == principal.tenant_id)
    if not principal.is_admin:
        stmt = stmt.where(
            or_(Conversation.assignee_id.is_(None), Conversation.assignee_id == principal.user_id)
        )
    return stmt


async def visible_ids(
    session: AsyncSession, principal: Principal, ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these conversations the caller may see now (the rule of every list)."""
    stmt = _visible_filter(select(Conversation.id), principal).where(Conversation.id.in_(ids))
    return set((await session.execute(stmt)).scalars())


COUNT_CAP = 10_000  # conversation lists count exactly up to here


@dataclass(frozen=True)
class ConversationQuery:
    status: ConversationStatus | None = None
    search: str | None = None
    limit: int = 50
    offset: int = 0


async def list_for(
    ctx: AppContext, principal: Principal, query: ConversationQuery
) -> tuple[list[tuple[Conversation, Contact]], int]:
    """Most recent first, with their contacts in one query (no N+1)."""
    stmt = _visible_filter(
        select(Conversation, Contact).join(Contact, Contact.id == Conversation.contact_id),
        principal,
    )
    if query.status is not None:
        stmt = stmt.where(Conversation.status == query.status.value)
    if query.search:
        stmt = _search(stmt, query.search)
    count_stmt = _count(principal, query)
    # Plain DESC on both columns: a backward scan of ix_conversations_tenant_recent, no sort.
    # (`NULLS LAST` would defeat the index; a conversation has a last_message_time from birth.)
    stmt = stmt.order_by(Conversation.last_message_time.desc(), Conversation.id.desc())
    async with ctx.reader() as session:
        total = int((await session.execute(count_stmt)).scalar_one())
        rows = (await session.execute(stmt.limit(query.limit).offset(query.offset))).all()
    return [(row[0], row[1]) for row in rows], total


def _count(principal: Principal, query: ConversationQuery) -> Any:
    """The list's total, up to COUNT_CAP + 1 (which means "more than COUNT_CAP").

    Without a search it counts conversations alone: joining every contact just to count cost
    more than the page itself (12 of 30 ms at 10k conversations)."""
    if query.search:
        base = select(Conversation.id).join(Contact, Contact.id == Conversation.contact_id)
        base = _search(_visible_filter(base, principal), query.search)
    else:
        base = _visible_filter(select(Conversation.id), principal)
    if query.status is not None:
        base = base.where(Conversation.status == query.status.value)
    # Counting stops past COUNT_CAP: an exact count of 100k conversations took 26 of the list's
    # 31 ms, for a figure nobody reads digit by digit ("10000+" says as much).
    return select(func.count()).select_from(base.limit(COUNT_CAP + 1).subquery())


def _search(stmt: Any, term: str) -> Any:
    like = f"%{term.strip().lower()}%"
    digits = "".join(ch for ch in term if ch.isdigit())
    text_match = (
        select(Message.id)
        .where(Message.conversation_id == Conversation.id, func.lower(Message.text).like(like))
        .exists()
    )
    conditions = [
        func.lower(Contact.name).like(like),
        func.lower(Contact.push_name).like(like),
        func.lower(Contact.first_name + " " + Contact.last_name).like(like),
        text_match,
    ]
    if digits:
        conditions.append(Contact.phone.like(f"%{digits}%"))
    return stmt.where(or_(*conditions))


async def load(
    tx: TenantTx, principal: Principal, conversation_id: uuid.UUID
) -> tuple[Conversation, Contact]:
    conv = await tx.session.get(Conversation, conversation_id)
    if conv is None or conv.tenant_id != principal.tenant_id:
        raise NotFound("Conversation not found", details={"conversation_id": str(conversation_id)})
    if not can_see(principal, conv):
        raise Forbidden("This conversation is assigned to another agent")
    contact = await tx.session.get(Contact, conv.contact_id)
    assert contact is not None
    return conv, contact


async def get_visible(
    ctx: AppContext, principal: Principal, conversation_id: uuid.UUID
) -> tuple[Conversation, Contact]:
    async with ctx.reader() as session:
        conv = await session.get(Conversation, conversation_id)
        if conv is None or conv.tenant_id != principal.tenant_id:
            raise NotFound(
                "Conversation not found", details={"conversation_id": str(conversation_id)}
            )
        if not can_see(principal, conv):
            raise Forbidden("This conversation is assigned to another agent")
        contact = await session.get(Contact, conv.contact_id)
        assert contact is not None
        return conv, contact


async def mark_read(ctx: AppContext, principal: Principal, conversation_id: uuid.UUID) -> None:
    async def work(tx: TenantTx) -> None:
        conv, contact = await load(tx, principal, conversation_id)
        if conv.unread_count:
            conv.unread_count = 0
            await emit_updated(tx, conv, contact, "read")

    await run_tenant_tx(ctx, principal.tenant_id, work)


async def assign(
    ctx: AppContext, principal: Principal, conversation_id: uuid.UUID, user_id: uuid.UUID | None
) -> dict[str, Any]:
    if not principal.is_admin and user_id not in (None, principal.user_id):
        raise Forbidden("Agents can only assign conversations to themselves")

    async def work(tx: TenantTx) -> dict[str, Any]:
        conv, contact = await load(tx, principal, conversation_id)
        if user_id is not None:
            user = await tx.session.get(User, user_id)
            if user is None or user.tenant_id != principal.tenant_id or not user.is_active:
                raise InvalidInput("No such user in this tenant", details={"user_id": str(user_id)})
        previous = conv.assignee_id
        conv.assignee_id = user_id
        if user_id is not None and conv.status in ("active", "waiting"):
            conv.status = ConversationStatus.ASSIGNED.value
        elif user_id is None and conv.status == ConversationStatus.ASSIGNED.value:
            conv.status = ConversationStatus.WAITING.value
        conv.updated_at = utcnow()
        prev = None if previous is None else str(previous)
        await emit_updated(tx, conv, contact, "assigned", previous_assignee_id=prev)
        return conversation_public(conv, contact)

    return await run_tenant_tx(ctx, principal.tenant_id, work)


async def open_of(tx: TenantTx, contact_id: uuid.UUID) -> Conversation | None:
    """The contact's one conversation that is not closed, if any."""
    stmt = select(Conversation).where(
        Conversation.tenant_id == tx.tenant_id,
        Conversation.contact_id == contact_id,
        Conversation.status != ConversationStatus.CLOSED.value,
    )
    return (await tx.session.execute(stmt)).scalar_one_or_none()


async def set_status(
    ctx: AppContext, principal: Principal, conversation_id: uuid.UUID, status: ConversationStatus
) -> dict[str, Any]:
    async def work(tx: TenantTx) -> dict[str, Any]:
        conv, contact = await load(tx, principal, conversation_id)
        change = "status"
        if conv.status == ConversationStatus.CLOSED.value and status != ConversationStatus.CLOSED:
            # A contact has at most one open conversation: a newer one wins, and is not named
            # (the caller may not be allowed to see it).
            if await open_of(tx, contact.id) is not None:
                raise Conflict("This contact already has an open conversation; write there instead")
            conv.closed_at = None
            change = "reopened"
        conv.status = status.value
        conv.updated_at = utcnow()
        if status == ConversationStatus.CLOSED:
            conv.closed_at = utcnow()
            conv.unread_count = 0
        await emit_updated(tx, conv, contact, change)
        return conversation_public(conv, contact)

    return await run_tenant_tx(ctx, principal.tenant_id, work)


def _unread_total_stmt(principal: Principal) -> Any:
    stmt = _visible_filter(select(func.coalesce(func.sum(Conversation.unread_count), 0)), principal)
    return stmt.where(Conversation.status != ConversationStatus.CLOSED.value)


async def unread_total(ctx: AppContext, principal: Principal) -> int:
    async with ctx.reader() as session:
        return int((await session.execute(_unread_total_stmt(principal))).scalar_one())


async def greeting_state(ctx: AppContext, principal: Principal) -> tuple[bool, int]:
    """(WhatsApp connected, unread total) for a socket's greeting, in one query: every connect
    pays for it, and it was two transactions before."""
    connected = (
        select(WhatsAppSession.id)
        .where(
            WhatsAppSession.tenant_id == principal.tenant_id,
            WhatsAppSession.state == SessionState.CONNECTED.value,
        )
        .exists()
    )
    stmt = select(connected, _unread_total_stmt(principal).scalar_subquery())
    async with ctx.reader() as session:
        row = (await session.execute(stmt)).one()
    return bool(row[0]), int(row[1])


async def find_by_phone(
    ctx: AppContext, principal: Principal, phone: str
) -> tuple[Conversation, Contact] | None:
    """The most recent visible conversation of the contact with this canonical phone."""
    stmt = _visible_filter(
        select(Conversation, Contact).join(Contact, Contact.id == Conversation.contact_id),
        principal,
    ).where(Contact.phone.in_(variants(phone)))
    stmt = stmt.order_by(
        (Conversation.status == ConversationStatus.CLOSED.value).asc(),
        Conversation.created_at.desc(),
    ).limit(1)
    async with ctx.reader() as session:
        row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])
