"""The event bus across instances: Redis pub/sub on `chat:tenant:{tenant_id}` (seed 000).

Publishing hands the event to this instance's handler first, so local clients never wait on
Redis (and keep being served while it is down), then PUBLISHes it with this instance's id in
front; the subscriber skips its own messages. Redis pub/sub is fire-and-forget: a message
published while a subscriber is reconnecting is simply lost. That is acceptable here because
each time the subscriber is listening again it runs its subscribe hooks (`StreamHub.catch_up`:
every stream reads what it missed from the database log), `events.stream` also fills any gap it
sees at the next event, and a client resuming with its last event id is replayed from the log,
never from Redis.

Wire format: `<instance id>\\n<Event.to_bytes()>` (the id is hex, so the first newline splits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from atende import metrics
from atende.events.bus import EventHandler
from atende.events.model import Event

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "chat:tenant:"
PATTERN = CHANNEL_PREFIX + "*"
BACKOFF_FIRST_SECS = 0.1
BACKOFF_MAX_SECS = 5.0
POLL_SECS = 1.0  # how long one read waits, so stop() and dead connections are noticed
CONFIRM_SECS = 5.0  # a subscription Redis does not confirm by then counts as lost
PublishHook = Callable[[Event], Awaitable[None]]
SubscribeHook = Callable[[], Awaitable[None]]


def channel_for(event: Event) -> str:
    return f"{CHANNEL_PREFIX}{event.tenant_id}"


def make_client(url: str) -> redis.Redis:
    """A client that fails fast while Redis is away instead of stalling the request that
    published: one quick retry, short timeouts."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )


class RedisBus:
    def __init__(self, url: str) -> None:
        self.redis = make_client(url)
        self.instance_id = uuid.uuid4().hex
        self._prefix = self.instance_id.encode() + b"\n"
        self._handler: EventHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._publish_failing = False
        self._hooks: list[PublishHook] = []
        self._subscribe_hooks: list[SubscribeHook] = []
        self.subscribed = asyncio.Event()  # set while the subscriber is listening
        self.reconnects = 0

    def add_publish_hook(self, hook: PublishHook) -> None:
        """Run `hook` for each event this instance publishes (once per event cluster-wide)."""
        self._hooks.append(hook)

    def add_subscribe_hook(self, hook: SubscribeHook) -> None:
        """Run `hook` each time the subscriber is listening (again), after Redis confirmed the
        subscription: whatever was published before that moment is in the database log."""
        self._subscribe_hooks.append(hook)

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        self._task = asyncio.create_task(self._subscribe_forever(), name="redis-bus-subscriber")

    async def publish(self, event: Event) -> None:
        if self._handler is not None:
            await self._handler(event)
        try:
            await self.redis.publish(channel_for(event), self._prefix + event.to_bytes())
        except (RedisError, OSError) as exc:
            metrics.REDIS_PUBLISH_FAILURES.inc()
            if not self._publish_failing:  # once per outage, not once per event
                logger.warning("[REDIS] publish failed (%s); serving local clients only", exc)
            self._publish_failing = True
        else:
            if self._publish_failing:
                logger.info("[REDIS] publishing again")
            self._publish_failing = False
        await self._run_hooks(event)

    async def _run_hooks(self, event: Event) -> None:
        for hook in self._hooks:
            try:
                await hook(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("publish hook failed for event %s", event.id, exc_info=True)

    async def ping(self) -> None:
        await self.redis.ping()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._handler = None
        await self.redis.aclose()

    # Subscriber ------------------------------------------------------------------------------
    async def _subscribe_forever(self) -> None:
        backoff = BACKOFF_FIRST_SECS
        first = True
        while True:
            try:
                await self._listen_once(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                logger.warning("[REDIS] subscriber lost (%s); reconnecting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX_SECS, backoff * 2)
                first = False
                self.reconnects += 1
                metrics.REDIS_RECONNECTS.inc()
            else:
                backoff = BACKOFF_FIRST_SECS

    async def _listen_once(self, first: bool) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.psubscribe(PATTERN)
            await self._confirmed(pubsub)
            self.subscribed.set()
            metrics.REDIS_SUBSCRIBED.set(1)
            if not first:
                logger.info("[REDIS] subscriber reconnected")
            await self._run_subscribe_hooks()
            while True:
                message = await pubsub.get_message(timeout=POLL_SECS)
                if message is not None and message.get("type") == "pmessage":
                    await self._on_message(message.get("data"))
        finally:
            self.subscribed.clear()
            metrics.REDIS_SUBSCRIBED.set(0)
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _confirmed(self, pubsub: PubSub) -> None:
        """Wait for Redis to confirm the subscription: only from then on is nothing published
        missed, so only then may the hooks read the log for what came before."""
        async with asyncio.timeout(CONFIRM_SECS):
            while True:
                message = await pubsub.get_message(timeout=POLL_SECS)
                if message is not None and message.get("type") == "psubscribe":
                    return

    async def _run_subscribe_hooks(self) -> None:
        for hook in self._subscribe_hooks:
            try:
                await hook()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("subscribe hook failed", exc_info=True)

    async def _on_message(self, raw: object) -> None:
        """One message, isolated: a bad one is logged and the subscriber carries on."""
        try:
            if not isinstance(raw, bytes):
                return
            origin, sep, body = raw.partition(b"\n")
            if not sep or origin == self.instance_id.encode():
                return
            event = Event.from_bytes(body)
            if self._handler is not None:
                await self._handler(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("[REDIS] could not handle a bus message")
