"""Public JSON shapes of stored rows: what REST answers and what events carry."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from atende.db.models import Contact, Conversation, Message, User, WhatsAppSession
from atende.errors import utc_iso


def contact_name(contact: Contact) -> str:
    if contact.name:
        return contact.name
    if contact.push_name:
        return contact.push_name
    return f"{contact.first_name} {contact.last_name}".strip()


def contact_public(contact: Contact) -> dict[str, Any]:
    return {
        "id": str(contact.id),
        "name": contact_name(contact),
        "phone": "+" + contact.phone,
        "phone_number": contact.phone,
        "push_name": contact.push_name,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email,
        "source": contact.source,
        "lead_status": contact.lead_status,
        "score": contact.score,
        "profile_picture_url": contact.profile_picture_url,
        "created_at": utc_iso(contact.created_at),
    }


def message_content(message: Message) -> dict[str, Any]:
    media = message.media or {}
    has_media = message.message_type != "text"
    return {
        "text": message.text,
        "media_url": f"/api/v1/media/{message.id}" if has_media else None,
        "filename": media.get("filename"),
        "caption": media.get("caption"),
        "mimetype": media.get("mimetype"),
    }


def message_public(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "direction": message.direction,
        "sender_type": message.sender_type,
        "sender_id": None if message.sender_id is None else str(message.sender_id),
        "message_type": message.message_type,
        "content": message_content(message),
        "status": message.status,
        "error": message.error,
        "whatsapp_message_id": message.whatsapp_message_id,
        "push_name": message.push_name,
        "created_at": utc_iso(message.created_at),
        "sent_at": None if message.sent_at is None else utc_iso(message.sent_at),
    }


def preview(message: Message) -> str:
    """One line for conversation lists: the text, or the media kind and caption."""
    if message.message_type == "text":
        return (message.text or "")[:200]
    caption = (message.media or {}).get("caption") or (message.media or {}).get("filename") or ""
    return f"[{message.message_type}] {caption}".strip()[:200]


def conversation_public(conv: Conversation, contact: Contact) -> dict[str, Any]:
    return {
        "id": str(conv.id),
        "tenant_id": str(conv.tenant_id),
        "contact_id": str(conv.contact_id),
        "status": conv.status,
        "assignee_id": None if conv.assignee_id is None else str(conv.assignee_id),
        "session_id": None if conv.session_id is None else str(conv.session_id),
        "unread_count": conv.unread_count,
        "last_message": conv.last_message,
        "last_message_time": None
        if conv.last_message_time is None
        else utc_iso(conv.last_message_time),
        "created_at": utc_iso(conv.created_at),
        "updated_at": utc_iso(conv.updated_at),
        "contact": contact_public(contact),
    }


def user_public(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "tenant_id": str(user.tenant_id),
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "is_active": user.is_active,
    }


def without_userinfo(url: str | None) -> str | None:
    """`url` without any `user:password@`: gateway credentials never leave the server."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def webhook_path(session: WhatsAppSession) -> str:
    """The session's own webhook URL path: its unguessable token finds it, whatever its name."""
    return f"/api/webhooks/{session.provider}/{session.webhook_token}"


def session_public(session: WhatsAppSession) -> dict[str, Any]:
    """What anyone of the tenant may see: never the gateway's address, key or webhook secret."""
    return {
        "id": str(session.id),
        "tenant_id": str(session.tenant_id),
        "provider": session.provider,
        "name": session.name,
        "state": session.state,
        "connected": session.state == "connected",
        "qr": session.qr,
        "last_error": session.last_error,
        "phone": session.phone,
        "updated_at": utc_iso(session.updated_at),
    }


def session_admin(session: WhatsAppSession, public_url: str) -> dict[str, Any]:
    """An admin's view: also where the gateway is (without credentials) and the URL to give it
    for webhooks. Keys and secrets are still never shown (only whether they are set)."""
    return {
        **session_public(session),
        "base_url": without_userinfo(session.base_url),
        "webhook_url": public_url.rstrip("/") + webhook_path(session),
        "has_api_key": bool(session.api_key),
        "has_webhook_secret": bool(session.webhook_secret),
    }
