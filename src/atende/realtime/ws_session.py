"""The lifecycle every plain-WebSocket dialect shares: greet, replay, read loop, idle timeout,
errors as `error` frames on a socket that stays open, clean-up in `finally`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from atende.context import AppContext
from atende.errors import AtendeError, InvalidInput, RateLimitExceeded, Unauthorized
from atende.origin import origin_allowed
from atende.realtime import auth as ws_auth
from atende.realtime.connection import Connection, Renderer, now_iso
from atende.realtime.flood import FrameBudget
from atende.services.auth import Principal

logger = logging.getLogger(__name__)
MAX_FRAME_CHARS = 64 * 1024  # a 4096-character message fits many times over


def dump(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


async def close_socket(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.client_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=code, reason=ws_auth.close_reason(reason))


Authenticate = Callable[[AppContext, WebSocket], Awaitable[Principal]]


async def open_socket(websocket: WebSocket, authenticate: Authenticate) -> Principal | None:
    """Origin check, accept, authenticate; a refused socket is closed with a clear reason."""
    ctx: AppContext = websocket.app.state.ctx
    if not origin_allowed(ctx.settings, websocket):
        await websocket.close(code=ws_auth.CLOSE_FORBIDDEN, reason="Origin not allowed")
        return None
    await websocket.accept()
    try:
        return await authenticate(ctx, websocket)
    except AtendeError as exc:
        unauthorized = isinstance(exc, Unauthorized)
        code = ws_auth.CLOSE_UNAUTHORIZED if unauthorized else ws_auth.CLOSE_FORBIDDEN
        await close_socket(websocket, code, exc.message)
        return None


class WsSession:
    """One authenticated socket. Subclasses say how to greet and how to handle a frame."""

    dialect = "base"

    def __init__(
        self, ctx: AppContext, websocket: WebSocket, principal: Principal, render: Renderer
    ) -> None:
        self.ctx = ctx
        self.ws = websocket
        self.principal = principal
        self.conn = Connection(ctx, principal, render, websocket.send_text, dialect=self.dialect)
        self.budget = FrameBudget(ctx.settings.ws_frames_per_sec, ctx.settings.ws_frames_burst)

    async def run(self) -> None:
        writer = asyncio.create_task(self.conn.writer())
        watchdog = asyncio.create_task(self._watch_close())
        logger.info(
            "[WS] Client connected: %s, tenant: %s, dialect: %s",
            self.conn.client_id,
            self.principal.tenant_id,
            self.dialect,
        )
        reason = "client closed"
        try:
            ok = await self.conn.attach(self.last_event_id(), greet=self.greet)
            if not ok:
                self.conn.send_frame(
                    dump(
                        {
                            "type": "resync_required",
                            "event_id": self.conn.last_sent,
                            "timestamp": now_iso(),
                        }
                    )
                )
            reason = await self._read_loop()
        except WebSocketDisconnect:
            reason = "client closed"
        finally:
            self.conn.detach()
            watchdog.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=2)
            logger.info("[WS] Client disconnected: %s, reason: %s", self.conn.client_id, reason)

    async def greet(self) -> None:
        raise NotImplementedError

    async def dispatch(self, frame: dict[str, Any]) -> str | None:
        """Handle one client frame; return a reason string to end the session."""
        raise NotImplementedError

    def last_event_id(self) -> int | None:
        raw = self.ws.query_params.get("last_event_id")
        if raw is None or raw == "":
            return None
        try:
            return max(0, int(raw))
        except ValueError:
            self.error(InvalidInput("last_event_id must be an integer; resuming live only"))
            return None

    async def _watch_close(self) -> None:
        """Too slow, token expired or revoked: the connection says so, the socket closes."""
        await self.conn.must_close.wait()
        await close_socket(self.ws, self.conn.close_code, self.conn.close_reason)

    async def _read_loop(self) -> str:
        idle = self.ctx.settings.ws_idle_timeout_secs
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=idle)
            except TimeoutError:
                await close_socket(self.ws, ws_auth.CLOSE_IDLE, "Inactivity timeout")
                return "timeout"
            if message["type"] == "websocket.disconnect":
                return "client closed"
            # Every frame, binary ones too, spends the budget: a flood of any kind is refused
            # with RATE_LIMIT_EXCEEDED before any work is done on it.
            if not self.budget.take():
                self.error(RateLimitExceeded("Too many frames; slow down", retry_after=1))
                continue
            raw = message.get("text")
            if raw is None:
                self.error(InvalidInput("Frames must be JSON text"))
                continue
            done = await self._handle(raw)
            if done is not None:
                return done

    async def _handle(self, raw: str) -> str | None:
        try:
            return await self.dispatch(parse_frame(raw))
        except AtendeError as exc:
            self.error(exc)
        except Exception:
            logger.exception("unexpected error handling a %s frame", self.dialect)
            self.error(AtendeError("Internal error handling the message"))
        return None

    def error(self, exc: AtendeError) -> None:
        frame = exc.to_event()
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            frame["retry_after"] = retry_after
        self.conn.send_frame(dump(frame))


def parse_frame(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_FRAME_CHARS:
        raise InvalidInput(f"Frame larger than {MAX_FRAME_CHARS} characters")
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("Invalid JSON") from exc
    if not isinstance(frame, dict):
        raise InvalidInput("A frame must be a JSON object with a `type`")
    return frame


def type_label(kind: Any) -> str:
    """A frame's `type` for an error message. Only a string is shown: `str()` of a deeply nested
    list raises RecursionError, and a client chooses what `type` holds."""
    return kind[:40] if isinstance(kind, str) else f"<{type(kind).__name__}>"


def optional_bool(frame: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean field; absent means `default`. `"false"` is not False: a wrong type is refused
    rather than coerced into the opposite of what the client meant."""
    value = frame.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"`{key}` must be true or false", details={"field": key})
    return value


def optional_uuid(frame: dict[str, Any], key: str) -> uuid.UUID | None:
    """An id field; absent or null means None, anything but a UUID string is refused."""
    value = frame.get(key)
    if value is None:
        return None
    refused = InvalidInput(f"`{key}` must be a UUID", details={"field": key})
    if not isinstance(value, str):
        raise refused
    try:
        return uuid.UUID(value)
    except ValueError:
        raise refused from None


def required_str(frame: dict[str, Any], key: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"Missing field `{key}`", details={"field": key})
    return value
