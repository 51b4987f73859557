"""Chaos: Redis stopped for OUTAGE_SECS (10 s by default) and started again while customers keep
writing in through instance A. Two agents watch from instance B: one stays connected the whole
time, one disconnects mid-outage and comes back (still mid-outage) with its last event id.

Every message must reach each agent exactly once and in order, and once Redis is back the one
that stayed must get what was published during the outage by itself: nothing is sent after
Redis returns until both agents have everything. B's /ready says Redis is down meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.chaos.summary import report
from tests.harness import Tenant
from tests.multi.conftest import Cluster, Instance, running_cluster, wait_until

OUTAGE_SECS = float(os.environ.get("ATENDE_CHAOS_REDIS_OUTAGE_SECS", "10"))
PACE_SECS = 0.05  # a customer message every 50 ms on A: the outage spans ~200 of them
LEAVE_AT, COME_BACK_AT = 1 / 3, 2 / 3  # fractions of the outage
BEFORE = AFTER = 5  # messages sent while Redis is up, before and after the outage
# The subscriber's reconnect backoff tops out at 5 s (events.redis_bus), then the log catch-up.
RECOVERY_SECS = 20.0
PHONES = [f"5511988{i:06d}" for i in range(4)]


@dataclass
class Inbox:
    """What one agent's /ws/chat socket received: new_message texts and their event ids."""

    texts: list[str] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)
    greeted: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "connected":
            self.greeted.set()
        if frame.get("type") == "new_message":
            self.texts.append(frame["message"]["text"])
            self.event_ids.append(frame["event_id"])
            self._changed.set()

    async def wait_for(self, count: int, secs: float) -> None:
        async with asyncio.timeout(secs):
            while len(self.texts) < count:
                self._changed.clear()
                await self._changed.wait()


class Agent:
    """An admin on instance B; `open` (re)connects, resuming from the last event id seen."""

    def __init__(self, tenant: Tenant) -> None:
        base = tenant.server.ws_base
        self.url = f"{base}/ws/chat?tenant_id={tenant.id}&token={tenant.admin_token}"
        self.inbox = Inbox()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        url = self.url
        if self.inbox.event_ids:
            url += f"&last_event_id={self.inbox.event_ids[-1]}"
        self.inbox.greeted.clear()
        self._ws = await connect(url)
        self._reader = asyncio.create_task(self._read(self._ws))
        await asyncio.wait_for(self.inbox.greeted.wait(), timeout=10)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            self.inbox.take(orjson.loads(raw))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._reader  # ends with the socket


@dataclass
class Customers:
    """Customers writing in through instance A's webhook, one message at a time, in order."""

    on_a: Tenant
    http: httpx.AsyncClient
    sent: list[str] = field(default_factory=list)
    answer_secs: dict[str, list[float]] = field(default_factory=dict)  # phase → webhook times

    async def say(self, text: str) -> None:
        phone = PHONES[len(self.sent) % len(PHONES)]
        started = time.monotonic()
        answer = await self.http.post(
            "/api/webhooks/sandbox",
            json={"session": self.on_a.session_name, "from": phone, "text": text, "id": text},
            headers={"X-Webhook-Secret": self.on_a.webhook_secret},
        )
        assert answer.status_code == 200, answer.text  # stored, Redis or not
        phase = text.split(" ", 1)[0]
        self.answer_secs.setdefault(phase, []).append(time.monotonic() - started)
        self.sent.append(text)

    def mean_answer_ms(self, phase: str) -> int:
        secs = self.answer_secs.get(phase) or [0.0]
        return round(1000 * sum(secs) / len(secs))

    async def burst(self, prefix: str, count: int) -> None:
        for i in range(count):
            await self.say(f"{prefix} {i}")

    async def keep_writing(self, until: float) -> None:
        """A message every PACE_SECS until the monotonic deadline: traffic, not a wait."""
        while time.monotonic() < until:
            await self.say(f"durante {len(self.sent)}")
            await asyncio.sleep(PACE_SECS)


async def ready_status(instance: Instance) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{instance.base_url}/ready")
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


async def outage(cluster: Cluster, customers: Customers, leaver: Agent) -> dict[str, Any]:
    """Stop Redis; customers keep writing; the leaver goes and comes back; B's /ready is read
    mid-outage. Returns that /ready body. Redis is still down when this returns."""
    cluster.redis.stop()
    started = time.monotonic()
    writing = asyncio.create_task(customers.keep_writing(started + OUTAGE_SECS))
    code, during = await ready_status(cluster.b)
    assert code == 503 and during["checks"]["redis"].startswith("error"), during
    await _at(started + OUTAGE_SECS * LEAVE_AT, writing)
    await leaver.close()
    await _at(started + OUTAGE_SECS * COME_BACK_AT, writing)
    await leaver.open()  # resumes from its last event id while Redis is still down
    await writing
    return during


async def _at(deadline: float, writing: asyncio.Task[None]) -> None:
    """Let the outage run until `deadline` (a point in the scenario, not a wait for an outcome);
    the writer failing ends it early."""
    await asyncio.wait({writing}, timeout=max(0.0, deadline - time.monotonic()))
    if writing.done():
        writing.result()


async def redis_back(cluster: Cluster) -> None:
    await cluster.redis.start()

    async def b_ready() -> bool:
        return (await ready_status(cluster.b))[0] == 200

    await wait_until(b_ready, "instance B to report ready again", RECOVERY_SECS)


def problems_of(name: str, inbox: Inbox, expected: list[str]) -> list[str]:
    found = []
    if inbox.texts != expected:
        missing = [t for t in expected if t not in inbox.texts]
        twice = sorted({t for t in inbox.texts if inbox.texts.count(t) > 1})
        found.append(f"{name}: {len(missing)} missing {missing[:5]}, twice {twice[:5]}")
    if inbox.event_ids != sorted(set(inbox.event_ids)):
        found.append(f"{name}: event ids out of order or repeated")
    return found


async def test_redis_outage_loses_nothing_and_needs_no_trigger(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, ATENDE_RATE_LIMIT_PER_MINUTE="100000") as cluster:
        tenant = await cluster.new_tenant()
        on_a = cluster.on(tenant, cluster.a)
        customers = Customers(on_a, on_a.http())
        stayer, leaver = Agent(cluster.on(tenant, cluster.b)), Agent(cluster.on(tenant, cluster.b))
        await stayer.open()
        await leaver.open()
        try:
            await customers.burst("antes", BEFORE)
            for agent in (stayer, leaver):
                await agent.inbox.wait_for(BEFORE, secs=10)
            during = await outage(cluster, customers, leaver)
            outage_count = len(customers.sent) - BEFORE
            await redis_back(cluster)
            # Nothing is sent now: the stayer must get the outage's messages by itself.
            caught_up = True
            try:
                for agent in (stayer, leaver):
                    await agent.inbox.wait_for(len(customers.sent), secs=RECOVERY_SECS)
            except TimeoutError:
                caught_up = False
            await customers.burst("depois", AFTER)
            for agent in (stayer, leaver):
                await agent.inbox.wait_for(len(customers.sent), secs=RECOVERY_SECS)
        finally:
            await stayer.close()
            await leaver.close()
            await customers.http.aclose()
    problems = problems_of("stayer", stayer.inbox, customers.sent)
    problems += problems_of("leaver", leaver.inbox, customers.sent)
    lost = sum(len(set(customers.sent) - set(a.inbox.texts)) for a in (stayer, leaver))
    report(
        "chaos redis outage",
        f"Redis down {OUTAGE_SECS:.0f}s with {outage_count} webhooks on A meanwhile "
        f"({len(customers.sent)} in all), 2 agents on B (one stayed, one left and resumed "
        f"mid-outage); webhook answered in {customers.mean_answer_ms('antes')} ms before, "
        f"{customers.mean_answer_ms('durante')} ms during the outage; /ready during: "
        f"{during['checks']['redis']}; stayer caught up with no "
        f"new event: {caught_up}; {len(problems)} problems",
        f"{lost} messages" if lost else "nothing",
    )
    assert caught_up, "the outage's messages reached B's agents only with a later event"
    assert not problems, problems
