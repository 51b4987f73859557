"""Load generators. Each public function takes a JSON-able spec, runs in its own process (see
`harness.run_in_process`) on uvloop, and returns a JSON-able result. The same function drives
Atende and its baseline, so the client side costs the same for both.

Receivers recognise a broadcast by its prefix (`{"type":"new_message"` on plain WebSockets,
`42["message:new"` on Socket.IO) and by a marker `bmk:<seq>:` in its text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import uvloop
import websockets
from websockets.asyncio.client import ClientConnection

from bench.harness import Spec, percentile, rss_bytes

PREFIXES = ('{"type":"new_message"', '42["message:new"')
MARKER = "bmk:"
CONNECT_CONCURRENCY = 64
CONNECT_TIMEOUT = 60.0
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"


def _run(coro: Awaitable[Spec]) -> Spec:
    async def main() -> Spec:
        return await coro

    return uvloop.run(main())


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _seq_of(frame: str | bytes) -> int | None:
    text = frame.decode() if isinstance(frame, bytes) else frame
    if not text.startswith(PREFIXES):
        return None
    at = text.find(MARKER)
    if at < 0:
        return None
    end = text.find(":", at + len(MARKER))
    try:
        return int(text[at + len(MARKER) : end])
    except ValueError:
        return None


# Connecting -----------------------------------------------------------------------------------
async def _open_ws(url: str) -> ClientConnection:
    return await websockets.connect(
        url, compression=None, max_size=None, open_timeout=CONNECT_TIMEOUT, ping_interval=None
    )


async def _open_native(url: str) -> ClientConnection:
    """Atende's /ws/chat: open, then wait for its `connected` greeting."""
    ws = await _open_ws(url)
    async with asyncio.timeout(CONNECT_TIMEOUT):
        while True:
            frame = await ws.recv()
            text = frame.decode() if isinstance(frame, bytes) else frame
            if '"connected"' in text[:40]:
                return ws


async def _open_plain(url: str) -> ClientConnection:
    return await _open_ws(url)


async def _open_sio(base: str, token: str) -> ClientConnection:
    """A minimal Socket.IO v5 / Engine.IO v4 client over a WebSocket (no polling upgrade)."""
    ws = await _open_ws(base + SIO_PATH)
    async with asyncio.timeout(CONNECT_TIMEOUT):
        opening = await ws.recv()
        if not str(opening).startswith("0"):
            raise RuntimeError(f"unexpected Engine.IO open packet {str(opening)[:80]}")
        await ws.send("40" + orjson.dumps({"token": token}).decode())
        while True:
            frame = str(await ws.recv())
            if frame == "2":
                await ws.send("3")
            elif frame.startswith("40"):
                return ws
            elif frame.startswith("44"):
                raise RuntimeError(f"Socket.IO connection refused: {frame[:200]}")


async def _connect_all(
    openers: list[Callable[[], Awaitable[ClientConnection]]],
) -> list[ClientConnection]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(opener: Callable[[], Awaitable[ClientConnection]]) -> ClientConnection:
        async with gate:
            return await opener()

    return list(await asyncio.gather(*(one(o) for o in openers)))


async def _connect_tolerant(
    openers: list[Callable[[], Awaitable[ClientConnection]]],
) -> tuple[list[ClientConnection], int]:
    """Like `_connect_all`, but a socket that fails to open is counted instead of fatal."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(opener: Callable[[], Awaitable[ClientConnection]]) -> ClientConnection | None:
        async with gate:
            try:
                return await opener()
            except (OSError, TimeoutError, RuntimeError, websockets.WebSocketException):
                return None

    found = await asyncio.gather(*(one(o) for o in openers))
    opened = [ws for ws in found if ws is not None]
    return opened, len(found) - len(opened)


def _openers(spec: Spec) -> list[Callable[[], Awaitable[ClientConnection]]]:
    """spec: {"dialect": "native"|"plain"|"sio", "urls": [...]} or sio {"base", "tokens"}."""
    dialect = spec["dialect"]
    if dialect == "sio":
        base: str = spec["base"]
        return [functools.partial(_open_sio, base, str(t)) for t in spec["tokens"]]
    opener = _open_native if dialect == "native" else _open_plain
    return [functools.partial(opener, str(u)) for u in spec["urls"]]


async def _close_all(sockets: list[ClientConnection]) -> None:
    async def close(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(close(ws) for ws in sockets))


# S1: echo -------------------------------------------------------------------------------------
def echo(spec: Spec) -> Spec:
    """Connect once, then for each load in `loads` (`reps` times, interleaved): the first
    `conns` sockets each send a frame, wait for its answer and then for the rest of `pace`
    seconds (Atende allows a socket 20 frames a second), for `duration` seconds."""
    return _run(_echo(spec))


async def _echo(spec: Spec) -> Spec:
    sockets = await _connect_all(_openers(spec))
    out: dict[str, list[Spec]] = {name: [] for name in spec["loads"]}
    for _ in range(int(spec["reps"])):
        for name, load in spec["loads"].items():
            out[name].append(await _echo_once(spec, load, sockets[: int(load["conns"])]))
    await _close_all(sockets)
    return out


async def _echo_once(spec: Spec, load: Spec, sockets: list[ClientConnection]) -> Spec:
    message: str = spec["message"]
    expect: str = spec["expect"]  # a substring of the answer that counts
    pace = float(load["pace"])  # seconds between sends of one socket, at least
    duration, warmup = float(load["duration"]), float(load["warmup"])
    latencies: list[float] = []
    refused: list[str] = []
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + duration

    async def answer(ws: ClientConnection) -> bool:
        while True:
            frame = await ws.recv()
            text = frame.decode() if isinstance(frame, bytes) else frame
            if expect in text:
                return True
            if '"error_code"' in text:  # refused (e.g. over the frame budget): not an echo
                refused.append(text[:200])
                return False

    async def loop(ws: ClientConnection) -> None:
        await asyncio.sleep(random.random() * pace)  # spread the sockets over one period
        while (now := time.perf_counter()) < stop_at:
            await ws.send(message)
            if await answer(ws) and now >= measure_from:
                latencies.append(time.perf_counter() - now)
            wait = now + pace - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)

    async with asyncio.timeout(duration + warmup + 30):
        await asyncio.gather(*(loop(ws) for ws in sockets))
    await asyncio.sleep(0.2)
    return {
        "count": len(latencies),
        "refused": len(refused),
        "refusal_sample": refused[:1],
        "rate": len(latencies) / duration,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
    }


# S2: idle memory ------------------------------------------------------------------------------
def idle_memory(spec: Spec) -> Spec:
    """Server RSS (pid read from /proc) before any socket and at each of `levels` idle,
    authenticated sockets, connected cumulatively."""
    return _run(_idle_memory(spec))


async def _idle_memory(spec: Spec) -> Spec:
    pid = int(spec["pid"])
    openers = _openers(spec)
    warm = await _connect_all(openers[:20])  # first-use costs (imports, pools) out of the way
    await _close_all(warm)
    await asyncio.sleep(1.0)
    rss = [rss_bytes(pid)]
    counts = [0]
    sockets: list[ClientConnection] = []
    connect_secs = 0.0
    failed = 0
    keepers: list[asyncio.Task[None]] = []
    for level in spec["levels"]:
        started = time.perf_counter()
        opened, missed = await _connect_tolerant(openers[len(sockets) + failed : int(level)])
        if spec["dialect"] == "sio":
            # An idle Socket.IO client still answers Engine.IO pings; one that does not is
            # disconnected after pingInterval + pingTimeout, which is not "idle" any more.
            keepers += [asyncio.create_task(_answer_pings(ws)) for ws in opened]
        sockets += opened
        failed += missed
        connect_secs += time.perf_counter() - started
        await asyncio.sleep(float(spec.get("settle", 1.5)))
        rss.append(rss_bytes(pid))
        counts.append(sum(1 for ws in sockets if ws.close_code is None))
    for task in keepers:
        task.cancel()
    await asyncio.gather(*keepers, return_exceptions=True)
    await _close_all(sockets)
    return {
        "rss": rss,
        "open": counts,
        "failed": failed,
        "connect_rate": len(sockets) / connect_secs,
    }


async def _answer_pings(ws: ClientConnection) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for frame in ws:
            if frame == "2":
                await ws.send("3")


# S3 / S4 / S8: fan-out of single messages -----------------------------------------------------
class Receivers:
    """Reader tasks on every socket; `wait(seq)` resolves when each socket has seen `seq`."""

    def __init__(self, sockets: list[ClientConnection], sio: bool) -> None:
        self.sockets = sockets
        self.sio = sio
        self.counts: dict[int, int] = {}
        self.last: dict[int, float] = {}
        self.done: dict[int, asyncio.Event] = {}
        self.seen = [set[int]() for _ in sockets]
        self.tasks = [asyncio.create_task(self._read(i, ws)) for i, ws in enumerate(sockets)]

    def expect(self, seq: int) -> asyncio.Event:
        return self.done.setdefault(seq, asyncio.Event())

    async def _read(self, index: int, ws: ClientConnection) -> None:
        seen = self.seen[index]
        total = len(self.sockets)
        with contextlib.suppress(websockets.ConnectionClosed, asyncio.CancelledError):
            async for frame in ws:
                if self.sio and frame == "2":
                    await ws.send("3")
                    continue
                seq = _seq_of(frame)
                if seq is None or seq in seen:
                    continue
                seen.add(seq)
                count = self.counts.get(seq, 0) + 1
                self.counts[seq] = count
                if count == total:
                    self.last[seq] = time.perf_counter()
                    self.expect(seq).set()

    def received(self) -> int:
        return sum(len(s) for s in self.seen)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await _close_all(self.sockets)


class Trigger:
    """Makes the server broadcast message `seq`: an HTTP POST (webhook or /broadcast) or a frame
    on a dedicated trigger socket (the `websockets.broadcast` baseline)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.run = uuid.uuid4().hex[:8]
        self.http: aiohttp.ClientSession | None = None
        self.ws: ClientConnection | None = None
        self.phones = int(spec.get("phones", 20))

    async def start(self) -> None:
        if self.spec["kind"] == "ws":
            self.ws = await _open_plain(self.spec["url"])
        else:
            connector = aiohttp.TCPConnector(limit=int(self.spec.get("http_limit", 256)))
            self.http = aiohttp.ClientSession(connector=connector)

    def body(self, seq: int) -> bytes:
        text = f"{MARKER}{seq}: bench {self.run}"
        if self.spec["kind"] == "sandbox":
            return orjson.dumps(
                {
                    "session": self.spec["session"],
                    "from": f"55119{87650000 + seq % self.phones:08d}",
                    "push_name": "Bench",
                    "text": text,
                    "id": f"bench-{self.run}-{seq}",
                }
            )
        return orjson.dumps({"type": "new_message", "message": {"text": text, "id": seq}})

    async def fire(self, seq: int) -> bool:
        body = self.body(seq)
        if self.ws is not None:
            await self.ws.send(body.decode())
            return True
        assert self.http is not None
        async with self.http.post(
            self.spec["url"], data=body, headers=self.spec.get("headers", {})
        ) as reply:
            await reply.read()
            return reply.status < 300

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.ws is not None:
            await self.ws.close()


def fanout(spec: Spec) -> Spec:
    """`reps` batches of `rounds` messages, one at a time: time from trigger to last receipt."""
    return _run(_fanout(spec))


async def _fanout(spec: Spec) -> Spec:
    receivers = Receivers(await _connect_all(_openers(spec)), spec["dialect"] == "sio")
    trigger = Trigger(spec["trigger"])
    await trigger.start()
    seqs = itertools.count(1)
    timeout = float(spec.get("timeout", 10.0))
    batches: list[list[float]] = []
    lost = 0
    try:
        for batch in range(-1, int(spec["reps"])):  # batch -1 is a warm-up
            latencies: list[float] = []
            for _ in range(int(spec["rounds"]) if batch >= 0 else 3):
                seq = next(seqs)
                done = receivers.expect(seq)
                started = time.perf_counter()
                await trigger.fire(seq)
                try:
                    await asyncio.wait_for(done.wait(), timeout)
                    latencies.append(receivers.last[seq] - started)
                except TimeoutError:
                    lost += 1
                await asyncio.sleep(float(spec.get("gap", 0.02)))
            if batch >= 0 and latencies:
                batches.append(latencies)
    finally:
        await trigger.stop()
        await receivers.stop()
    return {
        "p50_ms": [_ms(percentile(b, 50)) for b in batches],
        "p99_ms": [_ms(percentile(b, 99)) for b in batches],
        "lost": lost,
        "sockets": len(receivers.sockets),
    }


def cross_instance(spec: Spec) -> Spec:
    """S4: one trigger, receivers on the same instance and on the other; per-batch p99 each."""
    return _run(_cross_instance(spec))


async def _cross_instance(spec: Spec) -> Spec:
    local = Receivers(await _connect_all(_openers(spec["local"])), False)
    remote = Receivers(await _connect_all(_openers(spec["remote"])), False)
    trigger = Trigger(spec["trigger"])
    await trigger.start()
    seqs = itertools.count(1)
    out: dict[str, list[float]] = {"local_p99_ms": [], "remote_p99_ms": [], "added_p99_ms": []}
    lost = 0
    try:
        for batch in range(-1, int(spec["reps"])):
            lat_local: list[float] = []
            lat_remote: list[float] = []
            for _ in range(int(spec["rounds"]) if batch >= 0 else 3):
                seq = next(seqs)
                a, b = local.expect(seq), remote.expect(seq)
                started = time.perf_counter()
                await trigger.fire(seq)
                try:
                    await asyncio.wait_for(asyncio.gather(a.wait(), b.wait()), 10.0)
                    lat_local.append(local.last[seq] - started)
                    lat_remote.append(remote.last[seq] - started)
                except TimeoutError:
                    lost += 1
                await asyncio.sleep(0.02)
            if batch >= 0 and lat_local:
                p_local, p_remote = percentile(lat_local, 99), percentile(lat_remote, 99)
                out["local_p99_ms"].append(_ms(p_local))
                out["remote_p99_ms"].append(_ms(p_remote))
                out["added_p99_ms"].append(_ms(max(0.0, p_remote - p_local)))
    finally:
        await trigger.stop()
        await local.stop()
        await remote.stop()
    return {**out, "lost": lost}


def redis_pubsub(spec: Spec) -> Spec:
    """S4 baseline: raw redis-py PUBLISH → SUBSCRIBE, one message at a time; p99 per batch."""
    return _run(_redis_pubsub(spec))


async def _redis_pubsub(spec: Spec) -> Spec:
    import redis.asyncio as aioredis

    channel = f"bench-{uuid.uuid4().hex[:8]}"
    pub = aioredis.from_url(spec["url"])
    sub = aioredis.from_url(spec["url"])
    pubsub = sub.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    p99s: list[float] = []
    try:
        for batch in range(-1, int(spec["reps"])):
            latencies: list[float] = []
            for seq in range(int(spec["rounds"]) if batch >= 0 else 3):
                payload = orjson.dumps({"seq": seq, "text": f"{MARKER}{seq}:"})
                started = time.perf_counter()
                await pub.publish(channel, payload)
                async with asyncio.timeout(5.0):
                    while True:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                        if msg is not None and orjson.loads(msg["data"])["seq"] == seq:
                            break
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
            if batch >= 0:
                p99s.append(_ms(percentile(latencies, 99)))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await pub.aclose()
        await sub.aclose()
    return {"p99_ms": p99s}


# S5: a stream of webhooks at a fixed rate -----------------------------------------------------
def stream(spec: Spec) -> Spec:
    """Open-loop: `rate` triggers a second for `duration` s; latency to the last receiver."""
    return _run(_stream(spec))


async def _stream(spec: Spec) -> Spec:
    receivers = Receivers(await _connect_all(_openers(spec)), False)
    trigger = Trigger(spec["trigger"])
    await trigger.start()
    rate, duration = float(spec["rate"]), float(spec["duration"])
    total = int(rate * duration)
    started: dict[int, float] = {}
    ok = 0

    async def send(seq: int) -> None:
        nonlocal ok
        receivers.expect(seq)
        started[seq] = time.perf_counter()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            if await trigger.fire(seq):
                ok += 1

    try:
        origin = time.perf_counter()
        tasks = []
        for seq in range(1, total + 1):
            delay = origin + (seq - 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(seq)))
        await asyncio.wait_for(asyncio.gather(*tasks), 60.0)
        everyone = asyncio.gather(*(receivers.expect(s).wait() for s in range(1, total + 1)))
        with contextlib.suppress(TimeoutError):  # a shortfall shows in `received`
            await asyncio.wait_for(everyone, 15.0)
        latencies = [receivers.last[s] - started[s] for s in receivers.last]
        received = receivers.received()
    finally:
        await trigger.stop()
        await receivers.stop()
    return {
        "sent": total,
        "accepted": ok,
        "expected_receipts": ok * len(receivers.sockets),
        "received": received,
        "p50_ms": _ms(percentile(latencies, 50)) if latencies else None,
        "p99_ms": _ms(percentile(latencies, 99)) if latencies else None,
    }


# S6: HTTP request latency ---------------------------------------------------------------------
def http_latency(spec: Spec) -> Spec:
    """`concurrency` clients GET `url` back to back for `duration` seconds."""
    return _run(_http_latency(spec))


async def _http_latency(spec: Spec) -> Spec:
    latencies: list[float] = []
    errors = 0
    duration, warmup = float(spec["duration"]), float(spec.get("warmup", 0.5))
    connector = aiohttp.TCPConnector(limit=int(spec["concurrency"]))
    async with aiohttp.ClientSession(connector=connector, headers=spec.get("headers")) as http:
        begin = time.perf_counter()
        measure_from, stop_at = begin + warmup, begin + warmup + duration

        async def client() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < stop_at:
                async with http.get(spec["url"]) as reply:
                    await reply.read()
                    if reply.status >= 300:
                        errors += 1
                if now >= measure_from:
                    latencies.append(time.perf_counter() - now)

        async with asyncio.timeout(duration + warmup + 60):
            await asyncio.gather(*(client() for _ in range(int(spec["concurrency"]))))
    return {
        "count": len(latencies),
        "errors": errors,
        "rate": len(latencies) / duration,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
    }


# S9: logins beside the event loop ------------------------------------------------------------
def logins_and_health(spec: Spec) -> Spec:
    """`logins` clients log in back to back for `duration` seconds while one client GETs
    `health_url` every 10 ms; with `logins` = 0 the same probe on an idle server."""
    return _run(_logins_and_health(spec))


async def _logins_and_health(spec: Spec) -> Spec:
    login_lat: list[float] = []
    health_lat: list[float] = []
    errors = 0
    duration = float(spec["duration"])
    body = {"email": spec["email"], "password": spec["password"]}
    async with aiohttp.ClientSession() as http:
        stop_at = time.perf_counter() + duration

        async def login() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < stop_at:
                async with http.post(spec["login_url"], json=body) as reply:
                    await reply.read()
                    errors += reply.status != 200
                login_lat.append(time.perf_counter() - now)

        async def probe() -> None:
            while (now := time.perf_counter()) < stop_at:
                async with http.get(spec["health_url"]) as reply:
                    await reply.read()
                health_lat.append(time.perf_counter() - now)
                await asyncio.sleep(0.01)

        async with asyncio.timeout(duration + 60):
            await asyncio.gather(probe(), *(login() for _ in range(int(spec["logins"]))))
    return {
        "logins": len(login_lat),
        "errors": errors,
        "login_p50_ms": _ms(percentile(login_lat, 50)) if login_lat else None,
        "health_p50_ms": _ms(percentile(health_lat, 50)),
        "health_max_ms": _ms(max(health_lat)),
    }


# S7: ingest saturation ------------------------------------------------------------------------
def webhook_saturation(spec: Spec) -> Spec:
    """`concurrency` senders post distinct webhooks back to back for `duration` seconds."""
    return _run(_webhook_saturation(spec))


async def _webhook_saturation(spec: Spec) -> Spec:
    trigger = Trigger({**spec["trigger"], "phones": 500, "http_limit": spec["concurrency"]})
    await trigger.start()
    seqs = itertools.count(1)
    ok = errors = 0
    duration, warmup = float(spec["duration"]), float(spec.get("warmup", 0.5))
    begin = time.perf_counter()
    measure_from, stop_at = begin + warmup, begin + warmup + duration

    async def sender() -> None:
        nonlocal ok, errors
        while (now := time.perf_counter()) < stop_at:
            good = await trigger.fire(next(seqs))
            if now >= measure_from:
                ok += good
                errors += not good

    try:
        async with asyncio.timeout(duration + warmup + 60):
            await asyncio.gather(*(sender() for _ in range(int(spec["concurrency"]))))
    finally:
        await trigger.stop()
    return {"rate": ok / duration, "ok": ok, "errors": errors}


def raw_insert(spec: Spec) -> Spec:
    """S7 baseline: the raw driver inserting a message row and its event row per webhook."""
    return _run(_raw_insert(spec))


MESSAGE_COLUMNS = (
    "id, tenant_id, conversation_id, session_id, direction, sender_type, message_type, text, "
    "status, whatsapp_message_id, push_name, created_at, attempts"
)
EVENT_COLUMNS = "tenant_id, id, type, data, conversation_id, created_at"


async def _raw_insert(spec: Spec) -> Spec:
    duration, warmup = float(spec["duration"]), float(spec.get("warmup", 0.5))
    tenant, conv, session = spec["tenant_id"], spec["conversation_id"], spec["session_id"]
    run = uuid.uuid4().hex[:8]
    event_ids = itertools.count(int(spec.get("first_event_id", 1_000_000)))
    ok = 0
    begin = time.perf_counter()
    measure_from, stop_at = begin + warmup, begin + warmup + duration

    def row(seq: int) -> tuple[Any, ...]:
        text = f"{MARKER}{seq}: bench {run}"
        return (tenant, conv, session, text, f"raw-{run}-{seq}", next(event_ids))

    if spec["driver"] == "postgresql":
        import asyncpg

        pool = await asyncpg.create_pool(spec["dsn"], min_size=1, max_size=int(spec["pool"]))
        msg_sql = (
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, 'inbound', "
            "'contact', 'text', $5, 'delivered', $6, 'Bench', now(), 0)"
        )
        evt_sql = (
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, 'message_created', $3, $4, "
            "now())"
        )
        seqs = itertools.count(1)

        async def worker() -> None:
            nonlocal ok
            while (now := time.perf_counter()) < stop_at:
                t, c, s, text, wamid, eid = row(next(seqs))
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        msg_sql, uuid.uuid4(), uuid.UUID(t), uuid.UUID(c), uuid.UUID(s), text, wamid
                    )
                    await conn.execute(
                        evt_sql,
                        uuid.UUID(t),
                        eid,
                        orjson.dumps({"text": text}).decode(),
                        uuid.UUID(c),
                    )
                ok += now >= measure_from

        try:
            async with asyncio.timeout(duration + warmup + 60):
                await asyncio.gather(*(worker() for _ in range(int(spec["concurrency"]))))
        finally:
            await pool.close()
        return {"rate": ok / duration, "ok": ok}

    import aiosqlite

    async with aiosqlite.connect(spec["path"], isolation_level=None) as db:
        for pragma in ("journal_mode=WAL", "busy_timeout=10000", "synchronous=NORMAL"):
            await db.execute(f"PRAGMA {pragma}")
        msg_sql = (
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, 'inbound', 'contact', "
            "'text', ?, 'delivered', ?, 'Bench', datetime('now'), 0)"
        )
        evt_sql = (
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, 'message_created', ?, ?, "
            "datetime('now'))"
        )
        seq = 0
        while (now := time.perf_counter()) < stop_at:
            seq += 1
            t, c, s, text, wamid, eid = row(seq)
            hex_t, hex_c = uuid.UUID(t).hex, uuid.UUID(c).hex
            await db.execute("BEGIN IMMEDIATE")
            await db.execute(
                msg_sql, (uuid.uuid4().hex, hex_t, hex_c, uuid.UUID(s).hex, text, wamid)
            )
            await db.execute(evt_sql, (hex_t, eid, orjson.dumps({"text": text}).decode(), hex_c))
            await db.execute("COMMIT")
            ok += now >= measure_from
    return {"rate": ok / duration, "ok": ok}
