"""Where an agent's message goes: into which conversation, and out through which WhatsApp number.

The conversation. A send into a closed conversation X never writes anywhere the caller may not
see, and never makes a second row the inbox does not show:
- the contact has another open conversation Y: the message goes into Y if the caller may see Y;
  if not, the send is refused (403) without a word about Y (not its id, not its assignee);
- the contact has none: X itself is reopened (assigned to the sender if it had nobody).

The number. A conversation belongs to the session it came in on, and replies leave through it.
A conversation without one (a first message to a phone, an old row, a deleted session) takes,
in order: the session the caller named, the session of the contact's latest conversation, the
tenant's only session; with several to choose from and none named, the send is refused
(SESSION_REQUIRED) with the choices. Naming another session than the conversation's is refused
(SESSION_MISMATCH): a reply never silently leaves from a number the caller did not mean.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select

from atende.db.models import Contact, Conversation, WhatsAppSession
from atende.db.types import utcnow
from atende.errors import (
    Forbidden,
    NotFound,
    SessionMismatch,
    SessionRequired,
    WhatsAppDisconnected,
)
from atende.services import contacts as contacts_svc
from atende.services import conversations as conv_svc
from atende.services.auth import Principal
from atende.services.tx import TenantTx
from atende.types import ConversationStatus


@dataclass(frozen=True)
class ToConversation:
    conversation_id: uuid.UUID
    session_id: uuid.UUID | None = None  # only for a conversation with no number yet


@dataclass(frozen=True)
class ToPhone:
    phone: str  # canonical
    session_id: uuid.UUID | None = None  # needed when a new conversation has several to pick


Destination = ToConversation | ToPhone


@dataclass(frozen=True)
class Route:
    conversation: Conversation
    contact: Contact
    session: WhatsAppSession
    reopened: bool  # the conversation was closed and this send reopened it


async def resolve(tx: TenantTx, principal: Principal, destination: Destination) -> Route:
    """The conversation (visible to the caller) and the session this send uses."""
    reopened = False
    if isinstance(destination, ToConversation):
        conv, contact = await conv_svc.load(tx, principal, destination.conversation_id)
        if conv.status == ConversationStatus.CLOSED.value:
            current = await conv_svc.open_of(tx, contact.id)
            if current is None:
                _reopen(conv, principal.user_id)
                reopened = True
            else:
                _require_visible(principal, current)
                conv = current
    else:
        contact, _ = await contacts_svc.get_or_create_contact(
            tx, phone=destination.phone, wa_jid=None, push_name=None
        )
        found = await conv_svc.open_of(tx, contact.id)
        if found is not None:
            _require_visible(principal, found)
            conv = found
        else:
            session_row = await _session_for_new(tx, contact, destination.session_id)
            conv, _ = await conv_svc.get_or_open(tx, contact=contact, session_id=session_row.id)
    session_row = await _session_of(tx, conv, contact, destination.session_id)
    return Route(conv, contact, session_row, reopened)


def _require_visible(principal: Principal, conv: Conversation) -> None:
    # Deliberately says nothing identifying: the caller may not know this conversation exists.
    if not conv_svc.can_see(principal, conv):
        raise Forbidden("This contact's current conversation is assigned to another agent")


def _reopen(conv: Conversation, sender_id: uuid.UUID | None) -> None:
    if conv.assignee_id is None:
        conv.assignee_id = sender_id
    conv.status = (
        ConversationStatus.ASSIGNED.value
        if conv.assignee_id is not None
        else ConversationStatus.ACTIVE.value
    )
    conv.closed_at = None
    conv.updated_at = utcnow()


async def _session_of(
    tx: TenantTx, conv: Conversation, contact: Contact, named: uuid.UUID | None
) -> WhatsAppSession:
    """The conversation's own session; one is chosen (and kept) if it has none."""
    if conv.session_id is not None:
        if named is not None and named != conv.session_id:
            raise SessionMismatch(
                "This conversation belongs to another WhatsApp number",
                details={"field": "session_id", "conversation_session_id": str(conv.session_id)},
            )
        row = await tx.session.get(WhatsAppSession, conv.session_id)
        if row is not None and row.tenant_id == tx.tenant_id:
            return row
    row = await _session_for_new(tx, contact, named)
    conv.session_id = row.id
    return row


async def _session_for_new(
    tx: TenantTx, contact: Contact, named: uuid.UUID | None
) -> WhatsAppSession:
    if named is not None:
        return await _named(tx, named)
    latest = await _latest_session_of(tx, contact.id)
    if latest is not None:
        return latest
    rows = await _tenant_sessions(tx)
    if len(rows) == 1:
        return rows[0]
    if not rows:  # no WhatsApp at all is as disconnected as can be (SPEC §4)
        raise WhatsAppDisconnected("WhatsApp disconnected. Please reconnect.")
    raise SessionRequired(
        "This tenant has several WhatsApp numbers: say which one to send from (session_id)",
        details={
            "field": "session_id",
            "choices": [{"id": str(r.id), "name": r.name, "phone": r.phone} for r in rows],
        },
    )


async def _named(tx: TenantTx, session_id: uuid.UUID) -> WhatsAppSession:
    row = await tx.session.get(WhatsAppSession, session_id)
    if row is None or row.tenant_id != tx.tenant_id:  # another tenant's is as unknown as none
        raise NotFound("WhatsApp session not found", details={"session_id": str(session_id)})
    return row


async def _latest_session_of(tx: TenantTx, contact_id: uuid.UUID) -> WhatsAppSession | None:
    stmt = (
        select(WhatsAppSession)
        .join(Conversation, Conversation.session_id == WhatsAppSession.id)
        .where(
            Conversation.tenant_id == tx.tenant_id,
            Conversation.contact_id == contact_id,
            WhatsAppSession.tenant_id == tx.tenant_id,
        )
        .order_by(Conversation.created_at.desc())
        .limit(1)
    )
    return (await tx.session.execute(stmt)).scalar_one_or_none()


async def _tenant_sessions(tx: TenantTx) -> list[WhatsAppSession]:
    stmt = (
        select(WhatsAppSession)
        .where(WhatsAppSession.tenant_id == tx.tenant_id)
        .order_by(WhatsAppSession.created_at)
    )
    return list((await tx.session.execute(stmt)).scalars())
