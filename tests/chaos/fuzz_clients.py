"""Socket clients for the fuzzer (tests/chaos/test_socket_fuzz.py).

`Peer` is a WebSocket that records every frame it receives, decoded per dialect, and how the
server closed it. `JsonPeer` speaks dialects A and B. `EioPeer` speaks Engine.IO / Socket.IO by
hand over a plain WebSocket, so it can send packets no well-behaved Socket.IO client would.
`raw_exchange` opens a TCP connection, upgrades it, and writes bytes no WebSocket library would
(unmasked, truncated, reserved opcodes, invalid UTF-8, ...), then reads the server's close frame.
`PollingSession` drives Socket.IO's long-polling fallback by hand, one HTTP request at a time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

WAIT_SECS = 10.0


@dataclass(frozen=True)
class Got:
    """One frame from the server: its kind (`type`, or the Socket.IO event / packet name)."""

    kind: str
    data: Any


Where = Callable[[Got], bool]


class Peer:
    """Reads in the background; `wait` blocks on a condition over what was read so far."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.got: list[Got] = []
        self.ended = asyncio.Event()
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @property
    def close(self) -> tuple[int, str] | None:
        """(code, reason) of the close frame the server sent, if it sent one."""
        rcvd = self.ws.protocol.close_rcvd
        return None if rcvd is None else (rcvd.code, rcvd.reason)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                for got in await self.decode(raw):
                    self.got.append(got)
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.ended.set()
            async with self._changed:
                self._changed.notify_all()

    async def decode(self, raw: str | bytes) -> list[Got]:
        raise NotImplementedError

    async def wait(self, ready: Callable[[], bool], timeout: float = WAIT_SECS) -> bool:
        """True once `ready()` holds; False when the socket ended first or time ran out."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                while not ready():
                    if self.ended.is_set():
                        return ready()
                    await self._changed.wait()
                return True
        return ready()

    def find(self, where: Where, after: int = 0) -> Got | None:
        return next((got for got in self.got[after:] if where(got)), None)

    async def expect(self, where: Where, after: int = 0, timeout: float = WAIT_SECS) -> Got:
        assert await self.wait(lambda: self.find(where, after) is not None, timeout), (
            f"nothing matching arrived; ended={self.ended.is_set()} close={self.close} "
            f"last={self.got[-3:]}"
        )
        found = self.find(where, after)
        assert found is not None
        return found

    async def send(self, payload: str | bytes) -> bool:
        """False when the server had already closed the socket."""
        try:
            await self.ws.send(payload)
        except ConnectionClosed:
            return False
        return True

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), timeout=WAIT_SECS)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class JsonPeer(Peer):
    """Dialects A and B: every server frame is a JSON object with a `type`."""

    async def decode(self, raw: str | bytes) -> list[Got]:
        frame = orjson.loads(raw)
        return [Got(str(frame.get("type")), frame)]


async def open_json(url: str, first: dict[str, Any] | None = None) -> JsonPeer:
    ws = await connect(url, max_size=None, compression=None, ping_interval=None)
    peer = JsonPeer(ws)
    if first is not None:
        await peer.send(orjson.dumps(first).decode())
    await peer.expect(lambda g: g.kind == "connected")
    return peer


class EioPeer(Peer):
    """Dialect C by hand: Engine.IO v4 packets over a WebSocket, Socket.IO v5 inside them."""

    async def decode(self, raw: str | bytes) -> list[Got]:
        if isinstance(raw, bytes):
            return [Got("eio:binary", raw)]
        if raw == "2":  # Engine.IO ping: answer, or the server drops us after ping timeout
            await self.send("3")
            return []
        if not raw.startswith("4"):
            return [Got(f"eio:{raw[:1]}", raw[1:])]
        return [sio_packet(raw[1:])]

    async def emit(self, event: str, data: Any = None) -> bool:
        body = [event] if data is None else [event, data]
        return await self.send("42" + orjson.dumps(body).decode())


def sio_packet(text: str) -> Got:
    """A Socket.IO packet from the server: events by name, the rest as `sio:<type>`."""
    kind, rest = text[:1], text[1:]
    if kind == "2":
        event = orjson.loads(rest)
        return Got(str(event[0]), event[1] if len(event) > 1 else None)
    names = {"0": "sio:connect", "1": "sio:disconnect", "3": "sio:ack", "4": "sio:connect_error"}
    return Got(names.get(kind, f"sio:{kind}"), rest)


async def open_eio(base_ws: str, auth: dict[str, Any]) -> EioPeer:
    ws = await connect(
        f"{base_ws}/socket.io/?EIO=4&transport=websocket",
        max_size=None,
        compression=None,
        ping_interval=None,
    )
    peer = EioPeer(ws)
    await peer.expect(lambda g: g.kind == "eio:0")
    await peer.send("40" + orjson.dumps(auth).decode())
    await peer.expect(lambda g: g.kind in ("connected", "sio:connect_error"))
    assert peer.find(lambda g: g.kind == "connected") is not None, peer.got
    return peer


# Raw WebSocket frames ---------------------------------------------------------------------------
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9


def ws_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    claimed_length: int | None = None,
) -> bytes:
    """One WebSocket frame, right or wrong on purpose (RFC 6455 §5.2)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload) if claimed_length is None else claimed_length
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@dataclass(frozen=True)
class RawOutcome:
    status: int  # the HTTP status of the upgrade
    close_code: int | None  # from the server's close frame; None when it just dropped TCP
    close_reason: str


async def raw_exchange(port: int, path: str, garbage: bytes, *, eof: bool = False) -> RawOutcome:
    """Upgrade a raw TCP connection on `path`, write `garbage`, return how the server ended it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_SECS)
        status = int(head.split(b" ", 2)[1])
        writer.write(garbage)
        if eof:
            writer.write_eof()
        await writer.drain()
        code, reason = await asyncio.wait_for(_server_close(reader), WAIT_SECS)
        return RawOutcome(status, code, reason)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _server_close(reader: asyncio.StreamReader) -> tuple[int | None, str]:
    """Skip data frames until the server's close frame (or the end of the TCP stream)."""
    while True:
        try:
            first, second = await reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None, ""
        if first & 0x0F == OP_CLOSE:
            if len(payload) < 2:
                return 1005, ""
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode(errors="replace")


# Dialect C's long-polling fallback ----------------------------------------------------------------
class PollingSession:
    """One Engine.IO session over plain HTTP requests, driven by hand."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.url = f"{base_url}/socket.io/?EIO=4&transport=polling"

    async def open(self, auth: dict[str, Any]) -> None:
        opened = await self.http.get(self.url)
        assert opened.status_code == 200 and opened.text.startswith("0"), opened.text
        self.url += "&sid=" + orjson.loads(opened.text[1:])["sid"]
        assert (await self.post("40" + orjson.dumps(auth).decode())).status_code == 200
        await self.poll_until(lambda g: g.kind == "connected")

    async def post(self, body: str | bytes) -> httpx.Response:
        return await self.http.post(self.url, content=body)

    async def poll_until(self, where: Where, timeout: float = WAIT_SECS) -> Got:
        """Long-poll until a packet matching `where` arrives (each GET waits for the next)."""
        async with asyncio.timeout(timeout):
            while True:
                answer = await self.http.get(self.url)
                assert answer.status_code == 200, answer.text
                for text in answer.text.split("\x1e"):
                    if text.startswith("4") and where(got := sio_packet(text[1:])):
                        return got

    async def close(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self.post("1")
