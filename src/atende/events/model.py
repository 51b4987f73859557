"""The event as it travels: stored in the log, published on the bus, rendered by each dialect."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from atende.errors import utc_iso


class EventType:
    MESSAGE_CREATED = "message.created"
    MESSAGE_STATUS = "message.status"
    CONVERSATION_UPDATED = "conversation.updated"
    CONNECTION_STATUS = "connection.status"
    TYPING = "typing"
    # A user's tokens were revoked (logout, password or role change, disabled): its sockets
    # close with 4401. Dialects render nothing for it.
    USER_REVOKED = "user.revoked"


@dataclass(frozen=True, slots=True)
class Event:
    tenant_id: uuid.UUID
    id: int
    type: str
    data: dict[str, Any]
    created_at: datetime
    conversation_id: uuid.UUID | None = None
    visible_to: uuid.UUID | None = None  # None: every user of the tenant

    def visible_for(self, user_id: uuid.UUID, is_admin: bool) -> bool:
        return is_admin or self.visible_to is None or self.visible_to == user_id

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "tenant_id": str(self.tenant_id),
                "id": self.id,
                "type": self.type,
                "data": self.data,
                "created_at": utc_iso(self.created_at),
                "conversation_id": _str_or_none(self.conversation_id),
                "visible_to": _str_or_none(self.visible_to),
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Event:
        obj = orjson.loads(raw)
        return cls(
            tenant_id=uuid.UUID(obj["tenant_id"]),
            id=int(obj["id"]),
            type=obj["type"],
            data=obj["data"],
            created_at=datetime.fromisoformat(obj["created_at"].replace("Z", "+00:00")),
            conversation_id=_uuid_or_none(obj.get("conversation_id")),
            visible_to=_uuid_or_none(obj.get("visible_to")),
        )


def _str_or_none(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)
