"""Dialect C: Socket.IO at `/socket.io` (seed 002), python-socketio inside the same ASGI app.

Delivery does not go through Socket.IO rooms: each socket gets a `Connection` (the same ordered,
replaying, visibility-filtered queue the plain WebSockets use), fed by this instance's event
stream, and its frames are handed to Engine.IO already encoded as Socket.IO packets, so an event
is serialised once for every Socket.IO client of the process (SPEC §9, fan-out cost). Every
payload carries `event_id`; `auth.last_event_id` resumes.

What a socket receives: every event its user may see (conversations of other agents never reach
an agent), as `message:new`, `message:status`, `conversation:updated`, `connection:status`, and
`user_typing` only for conversations it has joined (the seed's room semantics), never its own
user's typing. Rooms `conversation:{id}` and `user:{id}` exist as the seed describes; the
per-user room plus `presence` keep at most three connections per user, across instances.
Client packets pass `sio_guard` first (malformed input, the frame budget, binary packets).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import socketio
from fastapi import FastAPI

from atende.config import Settings
from atende.context import AppContext
from atende.errors import AtendeError, Forbidden, InvalidInput, NotFound, Unauthorized
from atende.events.model import Event, EventType
from atende.realtime import presence
from atende.realtime.connection import CLOSE_UNAUTHORIZED, Connection, RenderCache, now_iso
from atende.realtime.flood import FrameBudget
from atende.realtime.sio_guard import EngineIOFrameGuard, GuardedServer
from atende.services import chat as chat_svc
from atende.services import conversations as conv_svc
from atende.services.access import authorize
from atende.services.auth import Principal

logger = logging.getLogger(__name__)

NAMESPACE = "/"
MAX_CONNECTIONS_PER_USER = 3  # seed 002: the oldest is dropped
TYPING_MAX = 10  # typing events allowed per socket ...
TYPING_WINDOW_SECS = 5.0  # ... in this many seconds
CONNECT_WAIT_SECS = 10.0
# Socket.IO protocol v5: an EVENT packet on the default namespace is "2" followed by the JSON
# array [name, payload]; Engine.IO adds its own "4" (MESSAGE) prefix when it sends it.
EVENT_PACKET_PREFIX = b"2"


def packet(name: str, payload: dict[str, Any]) -> bytes:
    return EVENT_PACKET_PREFIX + orjson.dumps([name, payload])


# Rendering: canonical event → Socket.IO packets -------------------------------------------------
def render(event: Event) -> list[bytes]:
    data = event.data
    if event.type == EventType.MESSAGE_CREATED:
        return [
            packet("message:new", {**data["message"], "event_id": event.id}),
            packet("conversation:updated", _conversation(event, "message")),
        ]
    if event.type == EventType.MESSAGE_STATUS:
        return [
            packet(
                "message:status",
                {
                    "message_id": data["message_id"],
                    "conversation_id": data["conversation_id"],
                    "status": data["status"],
                    "error": data.get("error"),
                    "timestamp": now_iso(),
                    "event_id": event.id,
                },
            )
        ]
    if event.type == EventType.CONVERSATION_UPDATED:
        return [packet("conversation:updated", _conversation(event, data.get("change")))]
    if event.type == EventType.TYPING:
        return [
            packet(
                "user_typing",
                {
                    "conversation_id": data["conversation_id"],
                    "user_id": data.get("user_id"),
                    "typing": data["is_typing"],
                    "from": data.get("from"),
                    "event_id": event.id,
                },
            )
        ]
    if event.type == EventType.CONNECTION_STATUS:
        return [packet("connection:status", {**data, "event_id": event.id})]
    return []


def _conversation(event: Event, change: Any) -> dict[str, Any]:
    return {"conversation": event.data["conversation"], "change": change, "event_id": event.id}


_render_cached = RenderCache(render)


# Per-socket state -----------------------------------------------------------------------------
def accepts(principal: Principal, joined: set[uuid.UUID], event: Event) -> bool:
    """Typing goes to the conversation's room, except the typing user (sender and its devices)."""
    if event.type != EventType.TYPING:
        return True
    if event.data.get("user_id") == str(principal.user_id):
        return False
    return event.conversation_id in joined


@dataclass
class SioClient:
    sid: str
    eio_sid: str
    principal: Principal
    conn: Connection
    joined: set[uuid.UUID]
    budget: FrameBudget
    typing_at: deque[float] = field(default_factory=deque)

    def typing_allowed(self) -> bool:
        now = time.monotonic()
        while self.typing_at and now - self.typing_at[0] > TYPING_WINDOW_SECS:
            self.typing_at.popleft()
        if len(self.typing_at) >= TYPING_MAX:
            return False
        self.typing_at.append(now)
        return True

    def reply(self, name: str, payload: dict[str, Any]) -> None:
        """A direct answer, queued behind the events already queued for this socket."""
        self.conn.send_frame(packet(name, {**payload, "event_id": self.conn.last_sent}))

    def error(self, message: str) -> None:
        self.reply("error", {"message": message})


Handler = Callable[[SioClient, Any], Awaitable[None]]


class SocketIOGateway:
    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        manager = (
            socketio.AsyncRedisManager(settings.redis_url, channel="atende-socketio")
            if settings.redis_url
            else None
        )
        self.sio = GuardedServer(
            self._client_for_eio,
            async_mode="asgi",
            client_manager=manager,
            # Starlette's CORSMiddleware answers CORS for the whole app; the Origin of a
            # connection is checked in `connect` against the same allowed origins.
            cors_allowed_origins=[],
            logger=False,
            engineio_logger=False,
        )
        self.clients: dict[str, SioClient] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._register()

    @property
    def ctx(self) -> AppContext:
        ctx: AppContext = self.app.state.ctx
        return ctx

    def asgi_app(self) -> EngineIOFrameGuard:
        return EngineIOFrameGuard(
            socketio.ASGIApp(self.sio, socketio_path="socket.io"),
            max_packet=self.sio.eio.max_http_buffer_size,
        )

    def _client_for_eio(self, eio_sid: str) -> SioClient | None:
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        return None if sid is None else self.clients.get(sid)

    def _register(self) -> None:
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        handlers: dict[str, Handler] = {
            "join_conversation": self._join,
            "leave_conversation": self._leave,
            "typing_start": self._typing_start,
            "typing_stop": self._typing_stop,
            "ping": self._ping,
        }
        for name, handler in handlers.items():
            self.sio.on(name, self._guarded(name, handler))
        self.sio.on("*", self._unknown)

    # Connection lifecycle --------------------------------------------------------------------
    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        """Refuse (ConnectionRefusedError, the client sees `connect_error`) or set up the socket."""
        origin = environ.get("HTTP_ORIGIN")
        if origin and origin.rstrip("/") not in self.settings.origins:
            raise socketio.exceptions.ConnectionRefusedError("Origin not allowed")
        auth = auth if isinstance(auth, dict) else {}
        token = auth.get("token")
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("Missing token")
        try:
            principal = await authorize(self.ctx, token)
        except Unauthorized as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.message) from None
        try:
            await self._open(sid, principal, auth.get("last_event_id"))
        except Exception:
            logger.exception("[SIO] could not set up socket %s", sid)
            await self._close(sid)
            raise socketio.exceptions.ConnectionRefusedError("Internal error") from None

    async def _open(self, sid: str, principal: Principal, last_event_id: Any) -> None:
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)

        async def send_text(text: str) -> None:
            with contextlib.suppress(Exception):  # the socket went away mid-send
                await self.sio.eio.send(eio_sid, text)

        joined: set[uuid.UUID] = set()
        conn = Connection(
            self.ctx,
            principal,
            _render_cached,
            send_text,
            dialect="socketio",
            accept=functools.partial(accepts, principal, joined),
        )
        budget = FrameBudget(self.settings.ws_frames_per_sec, self.settings.ws_frames_burst)
        client = SioClient(sid, eio_sid, principal, conn, joined, budget)
        self.clients[sid] = client
        await self.sio.enter_room(sid, f"user:{principal.user_id}")
        client.reply(
            "connected",
            {"message": "Connected to Atende", "user_id": str(principal.user_id)},
        )
        resume, bad = _last_event_id(last_event_id)
        if bad:
            client.error("last_event_id must be a non-negative integer; resuming live only")
        if not await conn.attach(resume):
            client.reply("resync_required", {"timestamp": now_iso()})
        self._spawn(self._run_writer(client))
        self._spawn(self._enforce_user_limit(client))
        logger.info(
            "[SIO] Client connected: %s, tenant: %s, user: %s",
            conn.client_id,
            principal.tenant_id,
            principal.user_id,
        )

    async def _run_writer(self, client: SioClient) -> None:
        """Start writing once Socket.IO has sent its CONNECT packet, so events come after it."""
        try:
            async with asyncio.timeout(CONNECT_WAIT_SECS):
                while not self.sio.manager.is_connected(client.sid, NAMESPACE):
                    if client.sid not in self.clients:
                        return
                    await asyncio.sleep(0.005)
        except TimeoutError:
            return
        writer = asyncio.create_task(client.conn.writer())
        closing = asyncio.create_task(client.conn.must_close.wait())
        try:
            done, _ = await asyncio.wait({writer, closing}, return_when=asyncio.FIRST_COMPLETED)
            if closing in done:
                await self._end(client)
        finally:
            closing.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=2)

    async def _end(self, client: SioClient) -> None:
        """Socket.IO has no close codes: say why in an `error` event (`code` 4401 means
        refresh the token and reconnect), then disconnect."""
        conn = client.conn
        logger.info("[SIO] %s closing: %s", conn.client_id, conn.close_reason)
        payload: dict[str, Any] = {"message": conn.close_reason, "code": conn.close_code}
        if conn.close_code == CLOSE_UNAUTHORIZED:
            payload["error_code"] = Unauthorized.error_code
        with contextlib.suppress(Exception):
            await self.sio.emit("error", {**payload, "event_id": conn.last_sent}, to=client.sid)
        await self.sio.disconnect(client.sid)

    async def _enforce_user_limit(self, client: SioClient) -> None:
        """At most three connections per user, across instances: drop the oldest ones."""
        user_id = client.principal.user_id
        dropped = await presence.for_ctx(self.ctx).claim_user_slot(
            user_id, client.sid, MAX_CONNECTIONS_PER_USER
        )
        for old_sid in dropped:
            logger.info("[SIO] user %s has too many connections; dropping %s", user_id, old_sid)
            with contextlib.suppress(Exception):
                await self.sio.disconnect(old_sid)

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        client = self.clients.get(sid)
        await self._close(sid)
        if client is None:
            return
        if reason == self.sio.reason.CLIENT_DISCONNECT:
            self._release_long_poll(client.eio_sid)
        logger.info("[SIO] Client disconnected: %s, reason: %s", client.conn.client_id, reason)

    def _release_long_poll(self, eio_sid: str) -> None:
        """Engine.IO holds a polling client's pending GET open after the client said CLOSE,
        until ping interval + timeout (45 s): clients waiting for it and a server shutting
        down would wait that long. Answer it now with an empty payload."""
        socket_ = self.sio.eio.sockets.get(eio_sid)
        if socket_ is not None and not socket_.upgraded:
            socket_.queue.put_nowait(None)

    async def _close(self, sid: str) -> None:
        client = self.clients.pop(sid, None)
        if client is None:
            return
        client.conn.detach()
        # The writer drains its queue and ends on the detach sentinel by itself.
        await presence.for_ctx(self.ctx).release_user_slot(client.principal.user_id, sid)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)  # a strong reference, or the loop may drop a pending task
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        for sid in tuple(self.clients):
            await self._close(sid)
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.sio.shutdown()

    # Client events ---------------------------------------------------------------------------
    def _guarded(self, name: str, handler: Handler) -> Callable[..., Awaitable[None]]:
        """Bad input of any kind becomes an `error` event; the socket stays open."""

        async def run(sid: str, data: Any = None, *_: Any) -> None:
            client = self.clients.get(sid)
            if client is None:
                return
            try:
                await handler(client, data)
            except (NotFound, Forbidden):
                client.error("Forbidden")
            except AtendeError as exc:
                client.error(exc.message)
            except Exception:
                logger.exception("[SIO] unexpected error handling %s", name)
                client.error("Internal error")

        return run

    async def _unknown(self, event: str, sid: str, *_: Any) -> None:
        client = self.clients.get(sid)
        if client is not None:
            client.error(f"Unknown event {str(event)[:40]!r}")

    async def _join(self, client: SioClient, data: Any) -> None:
        conversation_id = _conversation_id(data)
        await conv_svc.get_visible(self.ctx, client.principal, conversation_id)
        await self.sio.enter_room(client.sid, f"conversation:{conversation_id}")
        client.joined.add(conversation_id)
        client.reply(
            "joined_conversation",
            {
                "conversation_id": str(conversation_id),
                "message": f"Joined conversation {conversation_id}",
            },
        )

    async def _leave(self, client: SioClient, data: Any) -> None:
        conversation_id = _conversation_id(data)
        await self.sio.leave_room(client.sid, f"conversation:{conversation_id}")
        client.joined.discard(conversation_id)
        client.reply("left_conversation", {"conversation_id": str(conversation_id)})

    async def _typing_start(self, client: SioClient, data: Any) -> None:
        await self._typing(client, data, True)

    async def _typing_stop(self, client: SioClient, data: Any) -> None:
        await self._typing(client, data, False)

    async def _typing(self, client: SioClient, data: Any, typing: bool) -> None:
        """Stored as an event like every other dialect's typing, so A and B clients see it too."""
        conversation_id = _conversation_id(data)
        if not client.typing_allowed():
            raise InvalidInput(f"Too many typing events (at most {TYPING_MAX} per 5 s)")
        await chat_svc.typing_event(self.ctx, client.principal, conversation_id, typing)

    async def _ping(self, client: SioClient, data: Any) -> None:
        client.reply("pong", {"timestamp": now_iso()})


def _conversation_id(data: Any) -> uuid.UUID:
    raw = data.get("conversation_id") if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw:
        raise InvalidInput("conversation_id required")
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise InvalidInput("Invalid conversation_id") from exc


def _last_event_id(raw: Any) -> tuple[int | None, bool]:
    """(the id to resume from, whether the client sent something unusable)."""
    if raw is None or raw == "":
        return None, False
    if isinstance(raw, bool):
        return None, True
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None, True
    return (value, False) if value >= 0 else (None, True)


# Wiring into the app ----------------------------------------------------------------------------
def mount(app: FastAPI, settings: Settings) -> SocketIOGateway:
    gateway = SocketIOGateway(app, settings)
    app.state.socketio = gateway
    app.mount("/socket.io", gateway.asgi_app(), name="socket.io")
    return gateway


async def shutdown(app: FastAPI) -> None:
    gateway = getattr(app.state, "socketio", None)
    if isinstance(gateway, SocketIOGateway):
        await gateway.shutdown()
