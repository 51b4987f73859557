"""Socket authentication and Origin checks shared by the WebSocket dialects."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.websockets import WebSocket

from atende.context import AppContext
from atende.errors import Unauthorized
from atende.services.access import authorize
from atende.services.auth import Principal

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_IDLE = 4408


def token_from_handshake(websocket: WebSocket) -> str | None:
    token = websocket.query_params.get("token")
    if token:
        return token
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


async def first_message_auth(websocket: WebSocket, wait_secs: float) -> tuple[str, dict[str, Any]]:
    """Wait for `{"type":"auth","token":...}` as the first frame."""
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), timeout=wait_secs)
    except TimeoutError as exc:
        raise Unauthorized("No auth message received in time") from exc
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Unauthorized("First message must be a JSON auth message") from exc
    if not isinstance(frame, dict) or frame.get("type") != "auth":
        raise Unauthorized('First message must be {"type":"auth","token":...}')
    token = frame.get("token")
    if not isinstance(token, str) or not token:
        raise Unauthorized("Auth message has no token")
    return token, frame


async def principal_for(ctx: AppContext, token: str) -> Principal:
    """The socket's principal: the token, checked against its user's current state."""
    return await authorize(ctx, token)


def close_reason(message: str) -> str:
    # A WebSocket close reason must fit in 123 bytes.
    return message.encode()[:120].decode(errors="ignore")
