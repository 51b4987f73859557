"""One socket's outbound side, shared by every dialect.

Lifecycle: authenticate → `attach` (subscribe, replay from the log, then live) → `writer` drains an
ordered queue → `detach` in `finally`. Live events that arrive while the replay is read are
buffered and sent after it, skipping ids already sent, so nothing is lost and nothing repeats.
A socket too slow to keep up is closed (code 1013) rather than let its queue grow without bound:
the client resumes with its last event id and misses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from enum import Enum

from sqlalchemy.ext.asyncio import AsyncSession

from atende.context import AppContext
from atende.db.types import utcnow
from atende.errors import utc_iso
from atende.events import log as event_log
from atende.events.model import Event, EventType
from atende.realtime import presence
from atende.services import conversations as conv_svc
from atende.services.auth import Principal

logger = logging.getLogger(__name__)

Frames = list[bytes]
Renderer = Callable[[Event], Frames]
SendText = Callable[[str], Awaitable[None]]
CLOSE_TOO_SLOW = 1013
CLOSE_UNAUTHORIZED = 4401  # the token expired or was revoked: refresh, then resume
RENDER_CACHE_SIZE = 512


class State(Enum):
    CONNECTING = "connecting"
    REPLAYING = "replaying"
    LIVE = "live"
    CLOSED = "closed"


class RenderCache:
    """Serialise each event once per dialect, not once per socket (fan-out cost)."""

    def __init__(self, render: Renderer) -> None:
        self._render = render
        self._cache: OrderedDict[tuple[uuid.UUID, int], Frames] = OrderedDict()

    def __call__(self, event: Event) -> Frames:
        key = (event.tenant_id, event.id)
        frames = self._cache.get(key)
        if frames is None:
            frames = self._render(event)
            self._cache[key] = frames
            if len(self._cache) > RENDER_CACHE_SIZE:
                self._cache.popitem(last=False)
        return frames


class Connection:
    def __init__(
        self,
        ctx: AppContext,
        principal: Principal,
        render: Renderer,
        send_text: SendText,
        *,
        dialect: str,
        accept: Callable[[Event], bool] | None = None,
    ) -> None:
        self.ctx = ctx
        self.principal = principal
        self.client_id = f"client_{uuid.uuid4().hex[:12]}"
        self.dialect = dialect
        self.state = State.CONNECTING
        self.last_sent = 0
        self._render = render
        self._send_text = send_text
        self._accept = accept
        self._buffer: list[Event] = []
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        # Set when the socket must end (too slow, token expired or revoked); the dialect
        # closes it with `close_code` and `close_reason`.
        self.must_close = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""
        self._expiry: asyncio.TimerHandle | None = None

    def request_close(self, code: int, reason: str) -> None:
        if not self.must_close.is_set():
            self.close_code, self.close_reason = code, reason
            self.must_close.set()

    def _watch_expiry(self) -> None:
        """A token is good until its `exp`, not for the socket's whole life: close then (one
        timer handle per socket, no task)."""
        if self.principal.expires_at is None:
            return
        delay = max(0.0, self.principal.expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self.request_close, CLOSE_UNAUTHORIZED, "Token expired"
        )

    def _revoked_by(self, event: Event) -> bool:
        """Whether `event` ends this socket's token (a `user.revoked` of a newer version)."""
        data = event.data
        return (
            data.get("user_id") == str(self.principal.user_id)
            and int(data.get("token_version", 0)) > self.principal.token_version
        )

    # Subscriber protocol -------------------------------------------------------------------
    def offer(self, event: Event) -> None:
        if self.state == State.REPLAYING:
            self._buffer.append(event)
        elif self.state == State.LIVE:
            self._enqueue_event(event)

    def _enqueue_event(self, event: Event) -> None:
        if event.id <= self.last_sent:
            return
        self.last_sent = event.id
        if event.type == EventType.USER_REVOKED:
            if self._revoked_by(event):
                self.request_close(CLOSE_UNAUTHORIZED, "Session ended; log in again")
            return
        if not event.visible_for(self.principal.user_id, self.principal.is_admin):
            return
        if self._accept is not None and not self._accept(event):
            return
        for frame in self._render(event):
            self._put(frame)

    def _put(self, frame: bytes) -> None:
        if self._queue.qsize() >= self.ctx.settings.ws_send_queue_max:
            self.request_close(CLOSE_TOO_SLOW, "Too slow; reconnect with last_event_id")
            return
        self._queue.put_nowait(frame)

    def send_frame(self, frame: bytes) -> None:
        """A direct reply (pong, message_sent, error): queued behind earlier events."""
        self._put(frame)

    # Lifecycle ---------------------------------------------------------------------------
    async def attach(
        self, last_event_id: int | None, greet: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Subscribe, greet, and replay what the client missed. False when a resync is required.

        `greet` runs after subscribing (live events are buffered meanwhile), so an event that
        commits while the greeting is built is neither lost nor sent before the greeting.
        """
        self.state = State.REPLAYING
        self._watch_expiry()
        await presence.on_attach(self.ctx, self.principal.tenant_id, self.client_id, self.dialect)
        stream = await self.ctx.hub.subscribe(self.principal.tenant_id, self)
        if greet is not None:
            await greet()
        if last_event_id is None:
            self.last_sent = stream.last_id
            self._go_live()
            return True
        ok = await self._replay(last_event_id, stream.last_id)
        self._go_live()
        return ok

    async def _replay(self, last_event_id: int, live_from: int) -> bool:
        async with self.ctx.reader() as session:
            current, pruned = await event_log.counters(session, self.principal.tenant_id)
        if last_event_id < pruned or last_event_id > current:
            self.last_sent = max(live_from, self.last_sent)
            return False
        self.last_sent = last_event_id
        cursor = last_event_id
        while True:
            async with self.ctx.reader() as session:
                batch = await event_log.read_range(session, self.principal.tenant_id, cursor)
                visible = await self._visible_now(session, batch)
            if not batch:
                return True
            for event in batch:
                shown = _as_of_now(event, visible)
                if shown is None:
                    self.last_sent = event.id  # no longer this user's to see: resume past it
                else:
                    self._enqueue_event(shown)
            cursor = batch[-1].id

    async def _visible_now(
        self, session: AsyncSession, batch: list[Event]
    ) -> set[uuid.UUID] | None:
        """Which of the batch's conversations this user may see *now* (None: all, an admin).

        An event stores its audience as of when it happened; replaying by that would show an
        agent a conversation since given to a colleague (and hide one since put back in the
        shared queue). Replay decides as REST and live delivery do: by the conversation's
        current assignee, in one query per batch."""
        if self.principal.is_admin:
            return None
        ids = {e.conversation_id for e in batch if e.conversation_id is not None}
        return await conv_svc.visible_ids(session, self.principal, ids) if ids else set()

    def _go_live(self) -> None:
        buffered, self._buffer = self._buffer, []
        self.state = State.LIVE
        for event in buffered:
            self._enqueue_event(event)

    async def writer(self) -> None:
        while (frame := await self._queue.get()) is not None:
            await self._send_text(frame.decode())

    def detach(self) -> None:
        if self.state not in (State.CONNECTING, State.CLOSED):
            presence.on_detach(self.ctx, self.principal.tenant_id, self.client_id, self.dialect)
        self.state = State.CLOSED
        if self._expiry is not None:
            self._expiry.cancel()
        self.ctx.hub.unsubscribe(self.principal.tenant_id, self)
        self._queue.put_nowait(None)


def _as_of_now(event: Event, visible: set[uuid.UUID] | None) -> Event | None:
    """The event as replay shows it: None when its conversation is not the user's to see now
    (or is gone), its stored audience replaced by everyone's when it is."""
    if visible is None or event.conversation_id is None:
        return event  # an admin, or not about a conversation (connection status): as stored
    if event.conversation_id not in visible:
        return None
    return event if event.visible_to is None else replace(event, visible_to=None)


def now_iso() -> str:
    return utc_iso(utcnow())
