"""Client packets are checked before python-socketio / python-engineio see them.

What the libraries do with malformed client input, found by tests/chaos/test_socket_fuzz.py:
- Engine.IO decodes a WebSocket message partly outside its error handling: an empty message, a
  bad packet type or bad base64 raises out of its handler ("Exception in ASGI application") or
  is logged as "Unknown receive error", with a traceback either way, and the client gets no
  close or an unexplained one. A long-polling POST body is decoded the same way, answered 200.
- Socket.IO raises on a packet it cannot decode (bad JSON, `42` without data, a too-long ack id,
  a CONNECT_ERROR from a client, ...): a traceback per packet, and the client hears nothing.
- A client can fire the server's reserved handlers by name (`42["disconnect"]` tore down this
  app's per-socket state while the socket stayed open; `42["connect"]` crashed).
- A BINARY_EVENT header announcing n attachments makes the server swallow the next n messages
  (up to 10^10 of them, each up to 1 MB, kept in memory) as attachments.
Here: a WebSocket message that is not an Engine.IO packet is a protocol error (close 1002 with a
reason; over Engine.IO's packet size limit, 1009 as uvicorn does past its own), a long-polling
body that is not Engine.IO gets 400; a bad Socket.IO packet gets an `error` event and the socket
stays open (CONNECT_ERROR before it has connected); every packet spends the socket's frame
budget, like a frame of the plain WebSocket dialects; binary packets, which this API never uses,
and ACKs, which it never asks for, are refused.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

import socketio
from socketio import packet as sio_packet
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atende.realtime.flood import FrameBudget

logger = logging.getLogger(__name__)

NAMESPACE = "/"
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", "*"})
EIO_PACKET_TYPES = frozenset("0123456")  # OPEN CLOSE PING PONG MESSAGE UPGRADE NOOP
EIO_BASE64 = "b"  # a binary MESSAGE sent as text
EIO_CLOSE = "1"
EIO_SEPARATOR = "\x1e"  # between the packets of a long-polling payload
EIO_MAX_PAYLOAD_PACKETS = 16  # Engine.IO's Payload.max_decode_packets
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009
TOO_MANY_FRAMES = "Too many frames; slow down"


class GuardedClient(Protocol):
    budget: FrameBudget

    def error(self, message: str) -> None: ...


ClientLookup = Callable[[str], GuardedClient | None]


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server, with each client packet checked before it is dispatched."""

    def __init__(self, client_for: ClientLookup, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client_for = client_for

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        client = self._client_for(eio_sid)
        if client is not None and not client.budget.take():
            client.error(TOO_MANY_FRAMES)
            return
        problem = self._problem(data, connected=client is not None)
        if problem is None:
            await super()._handle_eio_message(eio_sid, data)
            return
        logger.info("[SIO] refused a packet from %s: %s", eio_sid, problem)
        if client is not None:
            client.error(problem)
        else:
            refusal = self.packet_class(
                sio_packet.CONNECT_ERROR, data={"message": problem}, namespace=NAMESPACE
            )
            await self._send_packet(eio_sid, refusal)

    def _problem(self, data: str | bytes, *, connected: bool) -> str | None:
        """Why a client packet is refused, or None to let python-socketio handle it."""
        if isinstance(data, bytes | bytearray):
            return "Binary packets are not supported"
        try:  # python-socketio decodes it again; client packets are few and small
            pkt = self.packet_class(encoded_packet=data)
        except Exception:  # any failure to decode is the client's: RecursionError included
            return "Malformed Socket.IO packet"
        kind = pkt.packet_type
        namespace = pkt.namespace or NAMESPACE
        if kind in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK):
            return "Binary packets are not supported"
        if kind == sio_packet.CONNECT:
            return "Already connected" if connected and namespace == NAMESPACE else None
        if kind == sio_packet.DISCONNECT:
            return None
        if kind != sio_packet.EVENT:
            return "Unexpected Socket.IO packet"  # ACK (never asked for), CONNECT_ERROR
        if namespace != NAMESPACE:
            return f"Unknown namespace {namespace[:40]!r}"
        if not connected:
            return "Not connected"
        return _event_problem(pkt.data)


def _event_problem(body: Any) -> str | None:
    if not isinstance(body, list) or not body or not isinstance(body[0], str):
        return 'An event must be ["name", ...]'
    if body[0] in RESERVED_EVENTS:
        return f"Reserved event name {body[0]!r}"
    return None


class EngineIOFrameGuard:
    """ASGI middleware before Engine.IO: WebSocket messages that are not Engine.IO packets, or
    are over its packet size limit, close the socket with a reason instead of reaching it."""

    def __init__(self, app: ASGIApp, max_packet: int) -> None:
        self.app = app
        self.max_packet = max_packet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            await self.checked_post(scope, receive, send)
            return
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        ending: tuple[int, str] | None = None

        async def close(code: int, reason: str) -> Message:
            logger.info("[SIO] closing a socket (%s): %s", code, reason)
            with contextlib.suppress(Exception):  # the client may be gone already
                await send({"type": "websocket.close", "code": code, "reason": reason})
            return {"type": "websocket.disconnect", "code": code}

        async def checked_receive() -> Message:
            nonlocal ending
            if ending is not None:
                return await close(*ending)
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            refusal = self.refusal(message)
            if refusal is not None:
                return await close(*refusal)
            if message.get("text") == EIO_CLOSE:
                # Engine.IO ends the session on a client's CLOSE but keeps reading the WebSocket
                # until its ping interval + timeout (45 s) pass: close it as soon as it asks.
                ending = (CLOSE_NORMAL, "Engine.IO session closed")
            return message

        await self.app(scope, checked_receive, send)

    async def checked_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A long-polling POST carries a payload of Engine.IO packets, which Engine.IO decodes
        the same unguarded way (a traceback, and 200 OK to the client): refuse it with 400."""
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_packet:
            await self.app(scope, receive, send)  # Engine.IO refuses it by its length itself
            return
        body = await read_body(receive, self.max_packet)
        if body is None or not eio_payload_ok(body):
            status, text = (413, "Payload too large") if body is None else (400, "Malformed")
            logger.info("[SIO] refused a long-polling payload: %s", text)
            await PlainTextResponse(f"{text} Engine.IO payload", status_code=status)(
                scope, receive, send
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def refusal(self, message: Message) -> tuple[int, str] | None:
        text = message.get("text")
        data = message.get("bytes") if text is None else text
        if data is not None and len(data) > self.max_packet:
            return CLOSE_TOO_BIG, f"Engine.IO packet larger than {self.max_packet} bytes"
        if text is None or eio_text_ok(text):
            return None
        return CLOSE_PROTOCOL_ERROR, "Malformed Engine.IO packet"


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body; None once it is past `limit` bytes (a chunked body declares no size)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
        if not message.get("more_body", False):
            return b"".join(chunks)


def eio_payload_ok(body: bytes) -> bool:
    """What Engine.IO's payload decoder accepts: UTF-8 packets joined by the record separator,
    at most 16 of them, or the same as a JSONP form field `d`."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return False
    if not text:
        return True
    if text.startswith("d="):
        fields = urllib.parse.parse_qs(text).get("d")
        if not fields:
            return False
        text = fields[0]
    packets = text.split(EIO_SEPARATOR)
    return len(packets) <= EIO_MAX_PAYLOAD_PACKETS and all(map(eio_text_ok, packets))


def eio_text_ok(text: str) -> bool:
    """What Engine.IO's decoder accepts: a known packet type, or `b` and valid base64."""
    if not text:
        return False
    if text[0] != EIO_BASE64:
        return text[0] in EIO_PACKET_TYPES
    try:
        base64.b64decode(text[1:])
    except (binascii.Error, ValueError):
        return False
    return True
