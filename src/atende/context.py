"""Everything a running Atende holds: settings, database, bus, streams, outbound HTTP, limits.

Built once by `create_app(settings)` (or by a CLI command) and handed to services explicitly.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atende import metrics, netguard, vault
from atende.config import Settings
from atende.db.engine import make_engine, make_reader, make_sessionmaker
from atende.db.models import WhatsAppSession
from atende.errors import NotFound
from atende.events import log as event_log
from atende.events.bus import Bus, InProcessBus
from atende.events.model import Event
from atende.events.stream import StreamHub
from atende.providers.base import Provider
from atende.services.login_throttle import LoginThrottle
from atende.services.passwords import Passwords
from atende.services.ratelimit import SendLimiter
from atende.types import ProviderName

logger = logging.getLogger(__name__)


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    reader: async_sessionmaker[AsyncSession]  # read-only work; never takes SQLite's write lock
    bus: Bus
    hub: StreamHub
    http: httpx.AsyncClient
    passwords: Passwords
    login_throttle: LoginThrottle
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    outbox_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    providers: dict[ProviderName, Provider] = field(default_factory=dict)
    limiter: SendLimiter | None = None
    # SQLite only: this process's writers queue here instead of in SQLite's busy handler, which
    # polls the write lock with sleeps of up to 100 ms. With 16 webhooks at once that sleeping,
    # not work, set the pace (see services.tx.tenant_tx).
    write_gate: asyncio.Lock | None = None
    # (provider, name) or ("<provider>#token", token) → (monotonic time, rows),
    # see services.sessions._cached
    session_cache: dict[tuple[str, str], tuple[float, list[WhatsAppSession]]] = field(
        default_factory=dict
    )

    def provider(self, name: str) -> Provider:
        try:
            return self.providers[ProviderName(name)]
        except (KeyError, ValueError) as exc:
            raise NotFound(f"Unknown provider {name[:40]!r}") from exc

    async def publish(self, event: Event) -> None:
        """Hand a committed event to the bus. Never raises: the change is already committed,
        and a client that resumes from the log gets the event anyway."""
        metrics.EVENTS.labels(event.type).inc()
        try:
            await self.bus.publish(event)
        except Exception:
            logger.exception("publishing event %s of tenant %s failed", event.id, event.tenant_id)

    def spawn(self, coro: asyncio.Future[None] | asyncio.Task[None] | object) -> None:
        """Run a fire-and-forget coroutine, keeping a reference so it is not collected."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def close(self) -> None:
        for task in tuple(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.bus.stop()
        await self.http.aclose()
        await self.engine.dispose()


def build_context(settings: Settings) -> AppContext:
    engine = make_engine(settings.database_url)
    vault.attach(engine, vault.Vault(settings.secret_key))
    sessionmaker = make_sessionmaker(engine)
    reader = make_reader(engine)

    async def read_gap(tenant_id: uuid.UUID, after: int, up_to: int) -> list[Event]:
        async with reader() as session:
            return await event_log.read_range(session, tenant_id, after, up_to)

    async def read_counter(tenant_id: uuid.UUID) -> int:
        async with reader() as session:
            return (await event_log.counters(session, tenant_id))[0]

    hub = StreamHub(read_gap, read_counter)
    bus: Bus
    if settings.redis_url:
        from atende.events.redis_bus import RedisBus

        redis_bus = RedisBus(settings.redis_url)
        # Redis drops what is published while a subscriber is away; each time it listens
        # again the streams read what they missed from the log, with no later event needed.
        redis_bus.add_subscribe_hook(hub.catch_up)
        bus = redis_bus
    else:
        bus = InProcessBus()
    return AppContext(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        reader=reader,
        bus=bus,
        hub=hub,
        http=netguard.client(settings),  # every gateway call and media fetch: see netguard
        passwords=Passwords(settings.password_hash_concurrency),
        login_throttle=LoginThrottle(settings),
        limiter=SendLimiter(settings),
        write_gate=asyncio.Lock() if settings.is_sqlite else None,
    )
