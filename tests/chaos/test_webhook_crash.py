"""Chaos: 10,000 webhooks, 10% repeated, two SIGKILLs mid-run: none lost, none twice, in order."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.chaos.proc import ServeProcess, base_env, cli, cli_token
from tests.chaos.summary import report

TOTAL = int(os.environ.get("ATENDE_CHAOS_MESSAGES", "10000"))
REPEAT_SHARE = 0.10
SENDERS = 16
KILL_AT = (0.3, 0.65)  # fractions of acknowledged deliveries at which the server is killed
DEADLINE_SECS = 600


class Gateway:
    """Posts webhooks like a gateway: retries whatever got no 2xx answer, until it does."""

    def __init__(self, server: ServeProcess, session: str, secret: str) -> None:
        self.server = server
        self.session = session
        self.secret = secret
        self.acked = 0
        self.retries = 0
        self.milestones: dict[int, asyncio.Event] = {}

    def milestone(self, count: int) -> asyncio.Event:
        """Set once `count` deliveries have been acknowledged."""
        return self.milestones.setdefault(count, asyncio.Event())

    def deliveries(self) -> list[int]:
        ids = list(range(TOTAL))
        repeats = random.Random(7).sample(ids, int(TOTAL * REPEAT_SHARE))
        out = ids + repeats
        random.Random(11).shuffle(out)
        return out

    async def deliver(self, http: httpx.AsyncClient, n: int) -> None:
        body = {
            "session": self.session,
            "from": f"55119{n % 97:04d}1234",
            "text": f"msg {n}",
            "id": f"chaos-{n}",
            "push_name": "Chaos",
        }
        while True:
            try:
                response = await http.post(
                    f"{self.server.base_url}/api/webhooks/sandbox",
                    json=body,
                    headers={"X-Webhook-Secret": self.secret},
                )
                if response.is_success:
                    self.acked += 1
                    if (reached := self.milestones.get(self.acked)) is not None:
                        reached.set()
                    return
            except httpx.TransportError:
                pass
            self.retries += 1
            await asyncio.sleep(0.05)  # a gateway's retry delay; the server may be restarting

    async def run(self, todo: list[int]) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in todo:
            queue.put_nowait(n)

        async def worker() -> None:
            async with httpx.AsyncClient(timeout=5.0) as http:
                while not queue.empty():
                    await self.deliver(http, queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(SENDERS)))


class Agent:
    """Stays connected through every crash, resuming with the last event id it saw."""

    def __init__(self, server: ServeProcess, tenant_id: str, token: str) -> None:
        self.server = server
        self.url = f"ws://127.0.0.1:{server.port}/ws/chat?tenant_id={tenant_id}&token={token}"
        self.last_event_id = 0
        self.event_ids: list[int] = []
        self.texts: list[str] = []
        self.reconnects = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        while not self.done.is_set():
            try:
                async with connect(f"{self.url}&last_event_id={self.last_event_id}") as ws:
                    await self._read(ws)
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError):
                self.reconnects += 1
                await asyncio.sleep(0.05)  # the server is down: try again shortly

    async def _read(self, ws: object) -> None:
        async for raw in ws:  # type: ignore[attr-defined]
            frame = orjson.loads(raw)
            if frame.get("type") != "new_message":
                continue
            self.event_ids.append(frame["event_id"])
            self.last_event_id = frame["event_id"]
            self.texts.append(frame["message"]["text"])
            if len(set(self.texts)) >= TOTAL:
                self.done.set()
                return


@pytest.mark.timeout(DEADLINE_SECS + 60)
async def test_ten_thousand_webhooks_survive_two_sigkills(tmp_path: Path) -> None:
    db = tmp_path / "chaos.db"
    env = base_env(f"sqlite+aiosqlite:///{db}")
    server = ServeProcess(env, tmp_path / "serve.log")
    await server.start()
    tenant = cli(env, "create-tenant", "--name", "Chaos")
    user = cli(
        env,
        "create-user",
        "--tenant",
        tenant["id"],
        "--email",
        "chaos@t.test",
        "--password",
        "tempestade-de-webhooks",
        "--role",
        "admin",
    )
    cli(
        env,
        "create-session",
        "--tenant",
        tenant["id"],
        "--provider",
        "sandbox",
        "--name",
        "chaos",
        "--webhook-secret",
        "chaos-secret",
    )
    token = cli_token(env, user["id"])
    gateway = Gateway(server, "chaos", "chaos-secret")
    agent = Agent(server, tenant["id"], token)
    todo = gateway.deliveries()
    kill_marks = [gateway.milestone(int(f * len(todo))) for f in KILL_AT]
    try:
        async with asyncio.timeout(DEADLINE_SECS):
            agent_task = asyncio.create_task(agent.run())
            sending = asyncio.create_task(gateway.run(todo))
            for mark in kill_marks:
                await mark.wait()
                await server.kill()
                await server.start()
            await sending
            await agent.done.wait()
            agent_task.cancel()
    finally:
        await server.stop()
    stored = sqlite3.connect(db).execute("SELECT count(*), count(DISTINCT text) FROM messages")
    count, distinct = stored.fetchone()
    report(
        "chaos webhooks",
        f"{len(todo)} deliveries ({len(todo) - TOTAL} repeats), {gateway.retries} gateway "
        f"retries, 2 SIGKILLs; stored {count}, agent received {len(agent.texts)} after "
        f"{agent.reconnects} reconnects",
        "nothing"
        if distinct == TOTAL and len(set(agent.texts)) == TOTAL
        else f"{TOTAL - distinct} stored, {TOTAL - len(set(agent.texts))} delivered",
    )
    assert (count, distinct) == (TOTAL, TOTAL)
    assert len(agent.texts) == TOTAL and len(set(agent.texts)) == TOTAL  # every one, none twice
    assert agent.event_ids == sorted(agent.event_ids)  # in order
    assert server.starts == 3
