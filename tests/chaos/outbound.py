"""The outbound chaos test's parts: the gateway's ledger of what it really sent (and the
webhooks it posts back), an agent's socket that outlives a crash, and agents sending by REST."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
from starlette.responses import Response
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.chaos.proc import ServeProcess
from tests.fakes.evolution import FakeEvolution
from tests.fakes.server import Fault, RecordedRequest, loopback_client

PHONES = [f"5511987{i:06d}" for i in range(8)]
ACKS = ("SERVER_ACK", "DELIVERY_ACK", "READ")
# Frames that follow a `message_status` frame with the same event id (delivered / failed).
COMPANION_FRAMES = frozenset({"message_delivered", "error"})


def phone_of(text: str) -> str:
    """Message `chaos-out-<n>` goes to PHONES[n % len(PHONES)]."""
    return PHONES[int(text.rsplit("-", 1)[1]) % len(PHONES)]


# -- the gateway's side ------------------------------------------------------------------------
@dataclass(frozen=True)
class Accepted:
    """One message the gateway really sent."""

    text: str
    wamid: str
    jid: str
    fault: Fault  # NONE: Atende got the answer; LATE/HANG: Atende timed out
    at: float  # monotonic time the request reached the gateway


@dataclass
class Ledger:
    """What the gateway sent, and its webhooks back to Atende (echo, then acks)."""

    fake: FakeEvolution
    webhook_url: str
    session: str
    seed: int
    kill_after: int
    accepted: dict[str, list[Accepted]] = field(default_factory=lambda: defaultdict(list))
    kill_mark: asyncio.Event = field(default_factory=asyncio.Event)
    webhooks: Counter[str] = field(default_factory=Counter)  # outcome → count
    echo_stored_at: dict[str, float] = field(default_factory=dict)  # gateway id → when
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)
    _client: httpx.AsyncClient = field(default_factory=lambda: loopback_client(timeout=5.0))

    @property
    def total(self) -> int:
        return sum(len(sends) for sends in self.accepted.values())

    async def on_answer(self, record: RecordedRequest, response: Response) -> None:
        if not record.path.startswith("/message/sendText/") or response.status_code != 201:
            return
        key = json.loads(bytes(response.body))["key"]
        text = str(record.json["text"])
        fault = record.fault or Fault.NONE
        sent = Accepted(text, key["id"], key["remoteJid"], fault, record.received_at)
        self.accepted[text].append(sent)
        if self.total >= self.kill_after:
            self.kill_mark.set()
        task = asyncio.create_task(self._pump(sent, len(self.accepted[text])))
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    async def _pump(self, sent: Accepted, nth: int) -> None:
        """Like Evolution: `send.message` right away, then the phone's acks as they come."""
        if await self._post(self.fake.sent_echo(sent.jid, sent.text, sent.wamid), "echo"):
            self.echo_stored_at[sent.wamid] = time.monotonic()
        for status in ack_plan(random.Random(f"{self.seed}:{sent.text}:{nth}")):
            await self._post(self.fake.ack(sent.wamid, status, instance=self.session), "ack")

    async def _post(self, payload: dict[str, Any], kind: str) -> bool:
        payload["instance"] = self.session
        answer = await self.fake.deliver_with_backoff(self._client, self.webhook_url, payload)
        ok = answer is not None and answer.is_success
        self.webhooks[f"{kind} {'stored' if ok else 'given up'}"] += 1
        return ok

    def echo_latencies(self) -> list[float]:
        """Seconds from the gateway sending a message to Atende storing its echo."""
        return [
            self.echo_stored_at[s.wamid] - s.at
            for sends in self.accepted.values()
            for s in sends
            if s.wamid in self.echo_stored_at
        ]

    async def drain(self) -> None:
        while self._pumps:
            await asyncio.gather(*tuple(self._pumps))
        await self._client.aclose()


def ack_plan(rng: random.Random) -> list[str]:
    """SERVER_ACK, DELIVERY_ACK, READ; a quarter arrive DELIVERY_ACK after READ (Evolution
    does that), a quarter repeat one ack (webhooks are at-least-once)."""
    plan = list(ACKS)
    if rng.random() < 0.25:
        plan[1], plan[2] = plan[2], plan[1]
    if rng.random() < 0.25:
        plan.append(rng.choice(ACKS))
    return plan


# -- the agents' side --------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusFrame:
    event_id: int
    message_id: str
    status: str


class Observer:
    """An admin's /ws/chat socket that stays through the crash, resuming with its last id."""

    def __init__(self, server: ServeProcess, tenant_id: str, token: str) -> None:
        self.url = f"ws://127.0.0.1:{server.port}/ws/chat?tenant_id={tenant_id}&token={token}"
        self.last_event_id = 0
        self.event_ids: list[int] = []
        self.statuses: list[StatusFrame] = []
        self.reconnects = 0
        self.resyncs = 0
        self._target = 0
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with connect(f"{self.url}&last_event_id={self.last_event_id}") as ws:
                    await self._read(ws)
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError):
                self.reconnects += 1
                await asyncio.sleep(0.05)  # the server is down: a client's reconnect delay

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame.get("type") == "resync_required":
                self.resyncs += 1
            event_id = frame.get("event_id")
            if not isinstance(event_id, int) or frame.get("type") in COMPANION_FRAMES:
                continue
            self.event_ids.append(event_id)
            self.last_event_id = event_id
            if frame["type"] == "message_status":
                self.statuses.append(StatusFrame(event_id, frame["message_id"], frame["status"]))
            if self.last_event_id >= self._target > 0:
                self.caught_up.set()

    async def wait_for(self, event_id: int) -> None:
        self._target = event_id
        if self.last_event_id >= event_id:
            return
        await self.caught_up.wait()


@dataclass
class Senders:
    """Agents sending through REST; a send whose answer the crash swallowed is looked up (as
    an inbox refetches the conversation) before it is sent again."""

    server: ServeProcess
    tenant_id: str
    token: str
    db: asyncpg.Pool
    senders: int = 4
    unanswered: set[str] = field(default_factory=set)  # sends that got no answer at least once

    async def send_all(self, texts: list[str]) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for text in texts:
            queue.put_nowait(text)

        async def worker() -> None:
            async with httpx.AsyncClient(timeout=10.0) as http:
                while not queue.empty():
                    await self._send(http, queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(self.senders)))

    async def _send(self, http: httpx.AsyncClient, text: str) -> None:
        phone = phone_of(text)
        while True:
            try:
                answer = await http.post(
                    f"{self.server.base_url}/api/tenants/{self.tenant_id}/chat/send",
                    json={"phone_number": phone, "text": text},
                    headers={"Authorization": f"Bearer {self.token}"},
                )
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 200:
                return
            assert answer is None or answer.status_code >= 500, answer.text
            self.unanswered.add(text)
            if await self.db.fetchval("SELECT id FROM messages WHERE text = $1", text):
                return
            await asyncio.sleep(0.05)  # the server is restarting: a client's retry delay
