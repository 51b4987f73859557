"""Domain vocabulary shared by every layer: plain string enums, safe to store and to send."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    AGENT = "agent"


class ProviderName(StrEnum):
    SANDBOX = "sandbox"
    EVOLUTION = "evolution"
    WAHA = "waha"
    CLOUD = "cloud"
    CONNECTION_SERVICE = "connection_service"


class SessionState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    QR = "qr"
    CONNECTED = "connected"


class ConversationStatus(StrEnum):
    ACTIVE = "active"
    WAITING = "waiting"
    ASSIGNED = "assigned"
    CLOSED = "closed"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class SenderType(StrEnum):
    CONTACT = "contact"
    AGENT = "agent"
    BOT = "bot"


class MessageType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        """Statuses only move forward; `failed` is terminal only from pending/sent."""
        return _STATUS_RANK[self]


_STATUS_RANK = {
    MessageStatus.PENDING: 0,
    MessageStatus.FAILED: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
}


def status_moves_forward(current: MessageStatus, new: MessageStatus) -> bool:
    """True when `new` is a real advance over `current` (acks arrive out of order: keep the max).

    A `failed` after `sent` is accepted (the gateway gave up); nothing moves a message out of
    `delivered`/`read`, and nothing moves a `failed` message except a later positive ack.
    """
    if new == current:
        return False
    if new == MessageStatus.FAILED:
        return current in (MessageStatus.PENDING, MessageStatus.SENT)
    return new.rank > current.rank
