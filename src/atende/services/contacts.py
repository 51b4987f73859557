"""Contacts / leads: one per tenant and canonical phone (seed 004's automatic lead)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from atende.db.models import Contact, CrmNotification, User
from atende.phone import variants
from atende.services.tx import TenantTx
from atende.types import Role


async def find_contact(tx: TenantTx, phone: str) -> Contact | None:
    """By canonical phone; also by the number without the Brazilian ninth digit."""
    stmt = select(Contact).where(
        Contact.tenant_id == tx.tenant_id, Contact.phone.in_(variants(phone))
    )
    return (await tx.session.execute(stmt)).scalars().first()


async def get_or_create_contact(
    tx: TenantTx,
    *,
    phone: str,
    wa_jid: str | None,
    push_name: str | None,
    conversation_link: str | None = None,
) -> tuple[Contact, bool]:
    """The contact for `phone`, created as a lead with a CRM notification when new.

    Concurrent creators race on the (tenant, phone) unique key; the loser's transaction is
    retried by `run_tenant_tx` and then finds the row.
    """
    contact = await find_contact(tx, phone)
    if contact is not None:
        refresh(contact, wa_jid=wa_jid, push_name=push_name)
        return contact, False
    contact = Contact(
        tenant_id=tx.tenant_id,
        phone=phone,
        wa_jid=wa_jid,
        push_name=push_name,
        first_name="Lead",
        last_name=phone[-4:],
        source="WHATSAPP",
        lead_status="NEW",
        score=50,
    )
    tx.session.add(contact)
    await tx.session.flush()
    await _notify_new_lead(tx, phone, contact.id)
    return contact, True


def refresh(contact: Contact, *, wa_jid: str | None, push_name: str | None) -> None:
    """Keep what the gateway last told us about the contact."""
    # The gateway's latest address wins: it is what WhatsApp accepts for replies.
    if wa_jid and contact.wa_jid != wa_jid:
        contact.wa_jid = wa_jid
    if push_name and contact.push_name != push_name:
        contact.push_name = push_name


async def _notify_new_lead(tx: TenantTx, phone: str, contact_id: uuid.UUID) -> None:
    admins = (
        (
            await tx.session.execute(
                select(User.id).where(User.tenant_id == tx.tenant_id, User.role == Role.ADMIN.value)
            )
        )
        .scalars()
        .all()
    )
    recipients: list[uuid.UUID | None] = list(admins) or [None]
    for admin_id in recipients:
        tx.session.add(
            CrmNotification(
                tenant_id=tx.tenant_id,
                user_id=admin_id,
                type="NEW_MESSAGE",
                title=f"Nova mensagem de {phone}",
                message="Lead criado automaticamente",
                link=f"/atendimento?contact={contact_id}",
            )
        )
