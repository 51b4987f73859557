"""ORM models. Tenancy is a column on every owned table and a filter in every query."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from atende.db.types import UTCDateTime, utcnow
from atende.vault import EncryptedText

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


def _uuid() -> uuid.UUID:
    return uuid.uuid4()


WEBHOOK_TOKEN_PREFIX = "wh_"  # tells a session token from Evolution's per-event URL suffixes


def new_webhook_token() -> str:
    return WEBHOOK_TOKEN_PREFIX + secrets.token_urlsafe(24)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(200))
    # The per-tenant event counter: bumped with UPDATE ... RETURNING inside each writing
    # transaction, so a tenant's commits serialise on this row and commit order = id order.
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Events at or below this id were pruned: resuming from before it needs a resync.
    events_pruned_through: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Every token carries the version it was minted at; bumping it (disable, role or password
    # change, logout) makes every earlier token of the user worthless at once.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_users_tenant", "tenant_id"),)


class RefreshToken(Base):
    """One issued refresh token (its `jti`). Refreshing uses it up and issues the next one of
    the same family; presenting a used one again means it was stolen: the family dies."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the token's jti
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[uuid.UUID] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index("ix_refresh_tokens_family", "family_id"),
        Index("ix_refresh_tokens_user", "user_id"),
        Index("ix_refresh_tokens_expires", "expires_at"),
    )


class WhatsAppSession(Base):
    __tablename__ = "whatsapp_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))  # unique per tenant, not across tenants
    # Unguessable: `/api/webhooks/{provider}/{webhook_token}` finds this session directly.
    webhook_token: Mapped[str] = mapped_column(String(64), default=new_webhook_token)
    # Gateway URL (it may carry user:password@), key and webhook secret are stored encrypted
    # with a key derived from ATENDE_SECRET_KEY (see atende.vault); the ORM sees plaintext.
    base_url: Mapped[str | None] = mapped_column(EncryptedText("whatsapp_sessions.base_url"))
    api_key: Mapped[str | None] = mapped_column(EncryptedText("whatsapp_sessions.api_key"))
    webhook_secret: Mapped[str | None] = mapped_column(
        EncryptedText("whatsapp_sessions.webhook_secret")
    )
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="disconnected")
    qr: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "provider", "name", name="uq_whatsapp_sessions_tenant_provider_name"
        ),
        UniqueConstraint("webhook_token", name="uq_whatsapp_sessions_webhook_token"),
        Index("ix_whatsapp_sessions_tenant", "tenant_id"),
        Index("ix_whatsapp_sessions_provider_name", "provider", "name"),
    )


class WebhookEvent(Base):
    """Provider event ids of state-changing webhooks already applied (WAHA's `evt_…`), so a
    replayed one changes nothing. Pruned with the event log."""

    __tablename__ = "webhook_events"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("whatsapp_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_webhook_events_created", "created_at"),)


class Contact(Base):
    """A customer; also the CRM lead of seed 004."""

    __tablename__ = "contacts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(32))  # canonical E.164 digits, BR ninth digit added
    wa_jid: Mapped[str | None] = mapped_column(String(120))  # provider's address, verbatim
    name: Mapped[str | None] = mapped_column(String(200))
    push_name: Mapped[str | None] = mapped_column(String(200))
    first_name: Mapped[str] = mapped_column(String(100), default="Lead")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(32), default="WHATSAPP")
    lead_status: Mapped[str] = mapped_column(String(32), default="NEW")
    score: Mapped[int] = mapped_column(Integer, default=50)
    profile_picture_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("tenant_id", "phone", name="uq_contacts_tenant_phone"),)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("whatsapp_sessions.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default="active")
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    unread_count: Mapped[int] = mapped_column(Integer, default=0)
    last_message: Mapped[str | None] = mapped_column(Text)
    last_message_time: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        # One open conversation per tenant and contact, enforced by the database.
        Index(
            "uq_conversations_open_contact",
            "tenant_id",
            "contact_id",
            unique=True,
            sqlite_where=text("status != 'closed'"),
            postgresql_where=text("status != 'closed'"),
        ),
        Index("ix_conversations_tenant_recent", "tenant_id", "last_message_time", "id"),
        Index("ix_conversations_tenant_status", "tenant_id", "status", "last_message_time"),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("whatsapp_sessions.id", ondelete="SET NULL")
    )
    direction: Mapped[str] = mapped_column(String(16))
    sender_type: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    message_type: Mapped[str] = mapped_column(String(16), default="text")
    text: Mapped[str | None] = mapped_column(Text)
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # url/media_id/mimetype/...
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    whatsapp_message_id: Mapped[str | None] = mapped_column(String(200))
    to_jid: Mapped[str | None] = mapped_column(String(120))
    push_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    # Outbox bookkeeping.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        # A webhook delivered twice stores one row: the database decides, not a read-then-write.
        UniqueConstraint("session_id", "whatsapp_message_id", name="uq_messages_session_wamid"),
        Index("ix_messages_conversation_created", "conversation_id", "created_at", "id"),
        Index("ix_messages_outbox", "status", "next_attempt_at"),
    )


class CrmNotification(Base):
    __tablename__ = "crm_notifications"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=_uuid)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index("ix_crm_notifications_tenant", "tenant_id", "created_at"),)


class Event(Base):
    """The replay log: one row per state change, id strictly increasing per tenant."""

    __tablename__ = "events"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(48))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column()
    # Who may see it: None = everyone in the tenant; else only admins and this user.
    visible_to: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_events_created", "created_at"),)
