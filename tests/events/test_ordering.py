"""Event ids: strictly increasing per tenant, delivered in order even when published late."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from atende.events.model import Event
from atende.events.stream import StreamHub, TenantStream
from tests.harness import Tenant


def _event(tenant_id: uuid.UUID, event_id: int) -> Event:
    return Event(
        tenant_id=tenant_id,
        id=event_id,
        type="typing",
        data={"n": event_id},
        created_at=datetime.now(UTC),
    )


class Sink:
    def __init__(self) -> None:
        self.ids: list[int] = []

    def offer(self, event: Event) -> None:
        self.ids.append(event.id)


async def test_stream_reorders_and_fills_gaps_from_the_log() -> None:
    tenant_id = uuid.uuid4()
    stored = {i: _event(tenant_id, i) for i in range(1, 8)}

    async def read_gap(_: uuid.UUID, after: int, up_to: int) -> list[Event]:
        return [stored[i] for i in range(after + 1, up_to + 1)]

    stream = TenantStream(tenant_id, 0, read_gap)
    sink = Sink()
    stream.subscribers.add(sink)
    for event_id in (3, 1, 2, 2, 7):  # late, repeated, and with 4..6 never published
        await stream.push(stored[event_id])
    assert sink.ids == [1, 2, 3, 4, 5, 6, 7]


async def test_a_gap_wider_than_one_log_batch_is_filled_at_once() -> None:
    tenant_id = uuid.uuid4()
    stored = {i: _event(tenant_id, i) for i in range(1, 11)}

    async def read_gap(_: uuid.UUID, after: int, up_to: int) -> list[Event]:
        return [stored[i] for i in range(after + 1, up_to + 1)][:3]  # the log reads in batches

    stream = TenantStream(tenant_id, 0, read_gap)
    sink = Sink()
    stream.subscribers.add(sink)
    await stream.push(stored[10])  # 1..9 were lost by the bus
    assert sink.ids == list(range(1, 11))


async def test_catch_up_delivers_what_the_bus_dropped_with_no_later_event() -> None:
    tenant_id = uuid.uuid4()
    stored: dict[int, Event] = {}

    async def read_gap(_: uuid.UUID, after: int, up_to: int) -> list[Event]:
        return [stored[i] for i in range(after + 1, up_to + 1)]

    async def read_counter(_: uuid.UUID) -> int:
        return len(stored)

    hub = StreamHub(read_gap, read_counter)
    sink = Sink()
    await hub.subscribe(tenant_id, sink)
    stored.update({i: _event(tenant_id, i) for i in range(1, 6)})  # committed, never published
    await hub.catch_up()  # what the bus runs once it listens again
    assert sink.ids == [1, 2, 3, 4, 5]
    await hub.catch_up()
    assert sink.ids == [1, 2, 3, 4, 5]  # nothing twice


async def test_concurrent_writers_are_seen_in_strict_order(tenant: Tenant) -> None:
    async with tenant.chat_socket() as client:
        sends = [tenant.customer_says(f"c{i}", phone=f"55119{i:04d}0000") for i in range(12)]
        results = await asyncio.gather(*sends)
        assert all(r.status_code == 200 for r in results)
        frames = await client.collect(12, "new_message")
    ids = [f["event_id"] for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == 12
    assert ids == list(range(ids[0], ids[0] + 12))  # dense: no id lost or skipped


async def test_resume_from_before_the_retention_window_asks_for_resync(tenant: Tenant) -> None:
    from datetime import timedelta

    from atende.events import log as event_log

    for i in range(3):
        await tenant.customer_says(f"velha {i}")
    ctx = tenant.server.ctx
    async with ctx.sessionmaker() as session, session.begin():
        await event_log.prune(session, timedelta(seconds=-1))  # everything is past the window
    async with tenant.chat_socket(last_event_id=1) as client:
        resync = await client.expect("resync_required")
        await tenant.customer_says("nova")
        live = await client.expect("new_message")
    assert live["message"]["text"] == "nova" and live["event_id"] > resync["event_id"]
