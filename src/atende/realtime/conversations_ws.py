"""Dialect B: the conversations WebSocket of seed 001 at `/api/v1/conversations/ws`.

Frames are `{"type": ..., "event_id": N, "data": {...}}`; the client authenticates with its first
message `{"type":"auth","token":...,"user_id":...}` (a `?token=` or Bearer header also works).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, WebSocket

from atende.context import AppContext
from atende.errors import Forbidden, InvalidInput
from atende.events.model import Event, EventType
from atende.realtime import auth as ws_auth
from atende.realtime.connection import RenderCache, now_iso
from atende.realtime.ws_session import WsSession, dump, open_socket, required_str, type_label
from atende.services import chat as chat_svc
from atende.services.auth import Principal

router = APIRouter()


def _frame(kind: str, event: Event, data: dict[str, Any]) -> bytes:
    return dump({"type": kind, "event_id": event.id, "data": data})


def render(event: Event) -> list[bytes]:
    data = event.data
    if event.type == EventType.MESSAGE_CREATED:
        message = data["message"]
        kind = "message_received" if message["direction"] == "inbound" else "message_sent"
        return [
            _frame(kind, event, message),
            _frame("conversation_updated", event, data["conversation"]),
        ]
    if event.type == EventType.MESSAGE_STATUS:
        return [
            _frame(
                "message_status_updated",
                event,
                {
                    "message_id": data["message_id"],
                    "status": data["status"],
                    "conversation_id": data["conversation_id"],
                    "error": data.get("error"),
                },
            )
        ]
    if event.type == EventType.CONVERSATION_UPDATED:
        return [_frame("conversation_updated", event, data["conversation"])]
    if event.type == EventType.TYPING:
        kind = "typing_start" if data["is_typing"] else "typing_stop"
        return [
            _frame(
                kind,
                event,
                {
                    "conversation_id": data["conversation_id"],
                    "contact_id": data["contact_id"],
                    "user_id": data.get("user_id"),
                    "from": data.get("from"),
                },
            )
        ]
    if event.type == EventType.CONNECTION_STATUS:
        return [_frame("connection_status", event, data)]
    return []


_render_cached = RenderCache(render)


@router.websocket("/api/v1/conversations/ws")
async def conversations_socket(websocket: WebSocket) -> None:
    principal = await open_socket(websocket, _authenticate)
    if principal is not None:
        await ConversationsSession(
            websocket.app.state.ctx, websocket, principal, _render_cached
        ).run()


async def _authenticate(ctx: AppContext, websocket: WebSocket) -> Principal:
    token = ws_auth.token_from_handshake(websocket)
    frame: dict[str, Any] = {}
    if token is None:
        token, frame = await ws_auth.first_message_auth(
            websocket, ctx.settings.ws_auth_timeout_secs
        )
    principal = await ws_auth.principal_for(ctx, token)
    claimed = frame.get("user_id")
    if claimed is not None and str(claimed) != str(principal.user_id):
        raise Forbidden("user_id does not match the token")
    return principal


class ConversationsSession(WsSession):
    dialect = "conversations"

    async def greet(self) -> None:
        self.conn.send_frame(
            dump(
                {
                    "type": "connected",
                    "data": {
                        "user_id": str(self.principal.user_id),
                        "tenant_id": str(self.principal.tenant_id),
                        "client_id": self.conn.client_id,
                        "timestamp": now_iso(),
                    },
                }
            )
        )

    async def dispatch(self, frame: dict[str, Any]) -> str | None:
        kind = frame.get("type")
        if kind == "ping":
            self.conn.send_frame(dump({"type": "pong", "data": {"timestamp": now_iso()}}))
        elif kind in ("typing_start", "typing_stop"):
            conversation_id = _uuid(required_str(frame, "conversation_id"))
            await chat_svc.typing_event(
                self.ctx, self.principal, conversation_id, kind == "typing_start"
            )
        elif kind != "auth":
            raise InvalidInput(f"Unknown message type {type_label(kind)!r}")
        return None


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidInput("conversation_id must be a UUID") from exc
