"""Who is connected, and unread counters: in Redis when configured (seed 000's keys), else here.

Keys (seed 000): `ws:tenant:{tenant_id}:connections` (a set of connection ids, SADD on connect,
SREM on disconnect) and `unread:{tenant_id}:{phone}` (the conversation's unread count). Plus
`ws:user:{user_id}:sockets`, a sorted set (score = connect time) used to keep at most N Socket.IO
connections per user across instances.

Presence is advisory: a Redis error is logged and the caller carries on (the socket is still
served), and keys carry a TTL so entries of a crashed instance fade out by themselves.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections import defaultdict
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from atende import metrics
from atende.context import AppContext
from atende.events.model import Event, EventType

logger = logging.getLogger(__name__)
KEY_TTL_SECS = 24 * 3600


def connections_key(tenant_id: uuid.UUID) -> str:
    return f"ws:tenant:{tenant_id}:connections"


def user_sockets_key(user_id: uuid.UUID) -> str:
    return f"ws:user:{user_id}:sockets"


def unread_key(tenant_id: uuid.UUID | str, phone: str) -> str:
    return f"unread:{tenant_id}:{phone}"


class Presence(Protocol):
    async def connected(self, tenant_id: uuid.UUID, conn_id: str) -> None: ...

    async def disconnected(self, tenant_id: uuid.UUID, conn_id: str) -> None: ...

    async def count(self, tenant_id: uuid.UUID) -> int: ...

    async def claim_user_slot(self, user_id: uuid.UUID, conn_id: str, limit: int) -> list[str]:
        """Register a user's connection; return the ids of its oldest ones beyond `limit`."""
        ...

    async def release_user_slot(self, user_id: uuid.UUID, conn_id: str) -> None: ...

    async def unread(self, tenant_id: uuid.UUID, phone: str) -> int | None: ...

    async def set_unread(self, tenant_id: str, phone: str, count: int) -> None: ...


class MemoryPresence:
    """The embedded shape: one process, plain dictionaries."""

    def __init__(self) -> None:
        self._conns: dict[uuid.UUID, set[str]] = defaultdict(set)
        self._users: dict[uuid.UUID, dict[str, float]] = defaultdict(dict)
        self._unread: dict[tuple[str, str], int] = {}

    async def connected(self, tenant_id: uuid.UUID, conn_id: str) -> None:
        self._conns[tenant_id].add(conn_id)

    async def disconnected(self, tenant_id: uuid.UUID, conn_id: str) -> None:
        conns = self._conns.get(tenant_id)
        if conns is not None:
            conns.discard(conn_id)
            if not conns:
                del self._conns[tenant_id]

    async def count(self, tenant_id: uuid.UUID) -> int:
        return len(self._conns.get(tenant_id, ()))

    async def claim_user_slot(self, user_id: uuid.UUID, conn_id: str, limit: int) -> list[str]:
        sockets = self._users[user_id]
        sockets[conn_id] = time.time()
        by_age = sorted(sockets, key=sockets.__getitem__)
        dropped = by_age[: max(0, len(by_age) - limit)]
        for old in dropped:
            del sockets[old]
        return dropped

    async def release_user_slot(self, user_id: uuid.UUID, conn_id: str) -> None:
        sockets = self._users.get(user_id)
        if sockets is not None:
            sockets.pop(conn_id, None)
            if not sockets:
                del self._users[user_id]

    async def unread(self, tenant_id: uuid.UUID, phone: str) -> int | None:
        return self._unread.get((str(tenant_id), phone))

    async def set_unread(self, tenant_id: str, phone: str, count: int) -> None:
        self._unread[(tenant_id, phone)] = count


class RedisPresence:
    """Shared by every instance; uses the event bus's Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._failing = False

    def _failed(self, what: str, exc: Exception) -> None:
        if not self._failing:  # once per outage
            logger.warning("[REDIS] presence %s failed (%s); carrying on without it", what, exc)
        self._failing = True

    def _ok(self) -> None:
        self._failing = False

    async def connected(self, tenant_id: uuid.UUID, conn_id: str) -> None:
        key = connections_key(tenant_id)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(key, conn_id)
                pipe.expire(key, KEY_TTL_SECS)
                await pipe.execute()
            self._ok()
        except (RedisError, OSError) as exc:
            self._failed("connect", exc)

    async def disconnected(self, tenant_id: uuid.UUID, conn_id: str) -> None:
        try:
            await self.redis.srem(connections_key(tenant_id), conn_id)
            self._ok()
        except (RedisError, OSError) as exc:
            self._failed("disconnect", exc)

    async def count(self, tenant_id: uuid.UUID) -> int:
        try:
            return int(await self.redis.scard(connections_key(tenant_id)))
        except (RedisError, OSError) as exc:
            self._failed("count", exc)
            return 0

    async def claim_user_slot(self, user_id: uuid.UUID, conn_id: str, limit: int) -> list[str]:
        key = user_sockets_key(user_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {conn_id: time.time()})
                pipe.expire(key, KEY_TTL_SECS)
                pipe.zrange(key, 0, -(limit + 1))
                results: list[Any] = await pipe.execute()
            dropped = [_text(raw) for raw in results[2]]
            if dropped:
                await self.redis.zrem(key, *dropped)
            self._ok()
            return dropped
        except (RedisError, OSError) as exc:
            self._failed("user slot", exc)
            return []

    async def release_user_slot(self, user_id: uuid.UUID, conn_id: str) -> None:
        try:
            await self.redis.zrem(user_sockets_key(user_id), conn_id)
            self._ok()
        except (RedisError, OSError) as exc:
            self._failed("user slot release", exc)

    async def unread(self, tenant_id: uuid.UUID, phone: str) -> int | None:
        try:
            raw = await self.redis.get(unread_key(tenant_id, phone))
        except (RedisError, OSError) as exc:
            self._failed("unread", exc)
            return None
        return None if raw is None else int(raw)

    async def set_unread(self, tenant_id: str, phone: str, count: int) -> None:
        try:
            await self.redis.set(unread_key(tenant_id, phone), count, ex=KEY_TTL_SECS * 30)
            self._ok()
        except (RedisError, OSError) as exc:
            self._failed("unread", exc)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


# One Presence per running context ---------------------------------------------------------------
# AppContext is an unhashable dataclass, so key by id() and keep a weak reference to notice reuse.
_by_ctx: dict[int, tuple[weakref.ref[AppContext], Presence]] = {}


def for_ctx(ctx: AppContext) -> Presence:
    found = _by_ctx.get(id(ctx))
    if found is not None and found[0]() is ctx:
        return found[1]
    client = getattr(ctx.bus, "redis", None)
    presence: Presence = (
        RedisPresence(client) if isinstance(client, redis.Redis) else MemoryPresence()
    )
    _by_ctx[id(ctx)] = (weakref.ref(ctx), presence)
    return presence


def install(ctx: AppContext) -> None:
    """At startup: mirror unread counts from the events this instance publishes. With the
    in-process bus there is nobody to share them with: the database is the unread counter."""
    presence = for_ctx(ctx)
    add_hook = getattr(ctx.bus, "add_publish_hook", None)
    if add_hook is None:
        return

    async def on_publish(event: Event) -> None:
        await mirror_unread(presence, event)

    add_hook(on_publish)


async def mirror_unread(presence: Presence, event: Event) -> None:
    """SET (not INCR) from the conversation the event carries: idempotent if repeated."""
    if event.type not in (EventType.MESSAGE_CREATED, EventType.CONVERSATION_UPDATED):
        return
    conversation = event.data.get("conversation")
    if not isinstance(conversation, dict):
        return
    phone = (conversation.get("contact") or {}).get("phone_number")
    count = conversation.get("unread_count")
    if isinstance(phone, str) and isinstance(count, int):
        await presence.set_unread(str(event.tenant_id), phone, count)


async def on_attach(ctx: AppContext, tenant_id: uuid.UUID, conn_id: str, dialect: str) -> None:
    metrics.CONNECTIONS.labels(dialect).inc()
    await for_ctx(ctx).connected(tenant_id, conn_id)


def on_detach(ctx: AppContext, tenant_id: uuid.UUID, conn_id: str, dialect: str) -> None:
    """Called from synchronous clean-up paths; the Redis write runs in the background."""
    metrics.CONNECTIONS.labels(dialect).dec()
    ctx.spawn(for_ctx(ctx).disconnected(tenant_id, conn_id))
