"""Per-tenant ordered delivery to the sockets of this instance.

Events are published after commit, so two transactions that committed as ids 5 then 6 may reach
us as 6 then 5, and a bus may lose one. Each tenant's stream therefore delivers strictly in id
order: an event ahead of the next expected id makes the stream read the missing ids from the log
(a committed id above N means N committed before it: see `events.log.lock_tenant_counter`).
Ids are dense per tenant, so "the next one" is always last + 1.

A bus that was down (Redis restarting) delivers nothing of what was published meanwhile, and
with no later event there is nothing to reveal the gap: `StreamHub.catch_up`, run by the bus each
time it (re)subscribes, reads each stream's tenant counter and delivers what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from atende.events.model import Event

log = logging.getLogger(__name__)

GapReader = Callable[[uuid.UUID, int, int], Awaitable[list[Event]]]
CounterReader = Callable[[uuid.UUID], Awaitable[int]]


class Subscriber(Protocol):
    def offer(self, event: Event) -> None:
        """Take one event without blocking (queue it); called in id order."""
        ...


class TenantStream:
    def __init__(self, tenant_id: uuid.UUID, last_id: int, read_gap: GapReader) -> None:
        self.tenant_id = tenant_id
        self.last_id = last_id
        self.subscribers: set[Subscriber] = set()
        self._pending: dict[int, Event] = {}
        self._read_gap = read_gap
        self._lock = asyncio.Lock()

    async def push(self, event: Event) -> None:
        async with self._lock:
            if event.id <= self.last_id:
                return  # already delivered (a bus may repeat itself)
            self._pending[event.id] = event
            if self.last_id + 1 not in self._pending:
                await self._fill_gap(min(self._pending))
            self._drain()

    async def advance_to(self, up_to: int) -> None:
        """Deliver every committed event through `up_to` (the tenant's counter)."""
        async with self._lock:
            if up_to > self.last_id:
                await self._fill_gap(up_to + 1)
                self._drain()

    async def _fill_gap(self, up_to_exclusive: int) -> None:
        try:
            found = await self._read_all(up_to_exclusive - 1)
        except Exception:
            log.exception(
                "could not read events %s..%s of tenant %s from the log",
                self.last_id + 1,
                up_to_exclusive - 1,
                self.tenant_id,
            )
            return
        for event in found:
            self._pending.setdefault(event.id, event)
        if self.last_id + 1 not in self._pending:
            # Pruned or never stored: skip ahead rather than stall the stream for ever.
            log.warning(
                "tenant %s: events %s..%s missing from the log, skipping",
                self.tenant_id,
                self.last_id + 1,
                up_to_exclusive - 1,
            )
            self.last_id = min(self._pending, default=up_to_exclusive) - 1

    async def _read_all(self, up_to: int) -> list[Event]:
        """The log's events after last_id through up_to. The reader returns one batch at a time
        (events.log.REPLAY_BATCH); a gap wider than that was left half-filled, holding the rest
        back until some later event came."""
        found: list[Event] = []
        after = self.last_id
        while after < up_to:
            batch = await self._read_gap(self.tenant_id, after, up_to)
            if not batch:
                break
            found += batch
            after = batch[-1].id
        return found

    def _drain(self) -> None:
        while (event := self._pending.pop(self.last_id + 1, None)) is not None:
            self.last_id = event.id
            for subscriber in tuple(self.subscribers):
                subscriber.offer(event)


class StreamHub:
    """All tenant streams of this process; the bus hands every event to `dispatch`."""

    def __init__(self, read_gap: GapReader, read_counter: CounterReader) -> None:
        self._streams: dict[uuid.UUID, TenantStream] = {}
        self._read_gap = read_gap
        self._read_counter = read_counter
        self._opening: dict[uuid.UUID, asyncio.Lock] = {}

    async def dispatch(self, event: Event) -> None:
        stream = self._streams.get(event.tenant_id)
        if stream is not None:
            await stream.push(event)

    async def subscribe(self, tenant_id: uuid.UUID, subscriber: Subscriber) -> TenantStream:
        """Attach a subscriber; returns the stream so the caller can see `last_id` for replay."""
        lock = self._opening.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            stream = self._streams.get(tenant_id)
            if stream is None:
                last_id = await self._read_counter(tenant_id)
                stream = TenantStream(tenant_id, last_id, self._read_gap)
                self._streams[tenant_id] = stream
        stream.subscribers.add(subscriber)
        return stream

    async def catch_up(self) -> None:
        """Bring every open stream up to its tenant's counter: events committed while the bus
        could not deliver them reach live clients now, not at the tenant's next event."""
        for stream in tuple(self._streams.values()):
            try:
                last_id = await self._read_counter(stream.tenant_id)
            except Exception:
                log.exception("could not read the event counter of tenant %s", stream.tenant_id)
                continue
            await stream.advance_to(last_id)

    def unsubscribe(self, tenant_id: uuid.UUID, subscriber: Subscriber) -> None:
        stream = self._streams.get(tenant_id)
        if stream is None:
            return
        stream.subscribers.discard(subscriber)
        if not stream.subscribers:
            del self._streams[tenant_id]

    def connection_count(self, tenant_id: uuid.UUID | None = None) -> int:
        if tenant_id is not None:
            stream = self._streams.get(tenant_id)
            return 0 if stream is None else len(stream.subscribers)
        return sum(len(s.subscribers) for s in self._streams.values())
