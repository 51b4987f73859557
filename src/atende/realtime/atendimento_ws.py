"""Dialect A: the atendimento WebSocket of seed 000 at `/ws/chat`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, WebSocket

from atende.context import AppContext
from atende.errors import Forbidden, InvalidInput
from atende.events.model import Event, EventType
from atende.realtime import auth as ws_auth
from atende.realtime.connection import RenderCache, now_iso
from atende.realtime.ws_session import (
    WsSession,
    close_socket,
    dump,
    open_socket,
    optional_bool,
    optional_uuid,
    required_str,
    type_label,
)
from atende.services import chat as chat_svc
from atende.services import conversations as conv_svc
from atende.services.auth import Principal

logger = logging.getLogger(__name__)
router = APIRouter()


def render(event: Event) -> list[bytes]:
    """Canonical event → seed 000 frames (each with the tenant's event_id)."""
    data = event.data
    base = {"event_id": event.id}
    if event.type == EventType.MESSAGE_CREATED:
        return [dump({"type": "new_message", **_new_message(data), **base})]
    if event.type == EventType.MESSAGE_STATUS:
        return _status_frames(data, base)
    if event.type == EventType.CONNECTION_STATUS:
        frame = {
            "type": "connection_status",
            "whatsapp_connected": data["whatsapp_connected"],
            "instance_id": data["instance_id"],
            "state": data["state"],
            "qr": data.get("qr"),
            "timestamp": now_iso(),
            **base,
        }
        if data.get("error"):
            frame["error"] = data["error"]
        return [dump(frame)]
    if event.type == EventType.TYPING:
        return [
            dump(
                {
                    "type": "typing",
                    "phone_number": data["phone_number"],
                    "is_typing": data["is_typing"],
                    "from": data.get("from"),
                    "user_id": data.get("user_id"),
                    **base,
                }
            )
        ]
    if event.type == EventType.CONVERSATION_UPDATED:
        return [
            dump(
                {
                    "type": "conversation_updated",
                    "conversation": data["conversation"],
                    "change": data.get("change"),
                    **base,
                }
            )
        ]
    return []


def _new_message(data: dict[str, Any]) -> dict[str, Any]:
    msg = data["message"]
    phone = data["conversation"]["contact"]["phone_number"]
    from_me = msg["direction"] == "outbound"
    content = msg["content"]
    text = content.get("text") or content.get("caption") or ""
    return {
        "phone_number": phone,
        "message": {
            "id": msg["id"],
            "from": "me" if from_me else phone,
            "text": text,
            "timestamp": msg["created_at"],
            "from_me": from_me,
            "push_name": msg.get("push_name"),
        },
    }


def _status_frames(data: dict[str, Any], base: dict[str, Any]) -> list[bytes]:
    frames = [
        dump(
            {
                "type": "message_status",
                "message_id": data["message_id"],
                "phone_number": data["phone_number"],
                "status": data["status"],
                "timestamp": now_iso(),
                **base,
            }
        )
    ]
    if data["status"] == "delivered":
        frames.append(
            dump(
                {
                    "type": "message_delivered",
                    "message_id": data["message_id"],
                    "phone_number": data["phone_number"],
                    "timestamp": now_iso(),
                    **base,
                }
            )
        )
    elif data["status"] == "failed":
        frames.append(
            dump(
                {
                    "type": "error",
                    "error_code": "MESSAGE_SEND_FAILED",
                    "message": "Failed to send message",
                    "details": {
                        "phone_number": data["phone_number"],
                        "reason": data.get("error"),
                        "message_id": data["message_id"],
                    },
                    "timestamp": now_iso(),
                    **base,
                }
            )
        )
    return frames


_render_cached = RenderCache(render)


@router.websocket("/ws/chat")
async def atendimento_socket(websocket: WebSocket) -> None:
    principal = await open_socket(websocket, _authenticate)
    if principal is not None:
        await AtendimentoSession(
            websocket.app.state.ctx, websocket, principal, _render_cached
        ).run()


async def _authenticate(ctx: AppContext, websocket: WebSocket) -> Principal:
    token = ws_auth.token_from_handshake(websocket)
    if token is None:
        token, _ = await ws_auth.first_message_auth(websocket, ctx.settings.ws_auth_timeout_secs)
    principal = await ws_auth.principal_for(ctx, token)
    wanted = websocket.query_params.get("tenant_id")
    if wanted and wanted != str(principal.tenant_id):
        raise Forbidden("Token is not valid for this tenant")
    return principal


class AtendimentoSession(WsSession):
    dialect = "atendimento"

    async def greet(self) -> None:
        connected, unread = await conv_svc.greeting_state(self.ctx, self.principal)
        self.conn.send_frame(
            dump(
                {
                    "type": "connected",
                    "client_id": self.conn.client_id,
                    "whatsapp_connected": connected,
                    "unread_count": unread,
                    "timestamp": now_iso(),
                    "user_id": str(self.principal.user_id),
                    "tenant_id": str(self.principal.tenant_id),
                }
            )
        )

    async def dispatch(self, frame: dict[str, Any]) -> str | None:
        kind = frame.get("type")
        if kind == "ping":
            self.conn.send_frame(dump({"type": "pong", "timestamp": now_iso()}))
        elif kind == "send_message":
            await self._send_message(frame)
        elif kind == "mark_as_read":
            await chat_svc.mark_read_by_phone(
                self.ctx, self.principal, required_str(frame, "phone_number")
            )
        elif kind == "typing":
            await chat_svc.agent_typing(
                self.ctx,
                self.principal,
                required_str(frame, "phone_number"),
                optional_bool(frame, "is_typing", True),
            )
        elif kind == "disconnect":
            given = frame.get("reason")
            reason = given[:100] if isinstance(given, str) and given else "client_request"
            await close_socket(self.ws, 1000, reason)
            return reason
        elif kind != "auth":  # a repeated auth frame is harmless
            label = type_label(kind)
            raise InvalidInput(f"Unknown message type {label!r}", details={"type": label})
        return None

    async def _send_message(self, frame: dict[str, Any]) -> None:
        phone = required_str(frame, "phone_number")
        text = required_str(frame, "text")
        session_id = optional_uuid(frame, "session_id")
        result = await chat_svc.send_text_to_phone(
            self.ctx, self.principal, phone, text, session_id
        )
        msg = result["message"]
        self.conn.send_frame(
            dump(
                {
                    "type": "message_sent",
                    "message_id": msg["id"],
                    "timestamp": msg["created_at"],
                    "success": True,
                    "phone_number": result["conversation"]["contact"]["phone_number"],
                }
            )
        )
