"""What the socket fuzzer throws, generated from a seeded `random.Random` so a failure replays.

Every `Shot` says what a correct server does with it:
- REPLY: exactly one answer — an `error` (per SPEC, the socket stays open; a frame over the frame
  budget gets `RATE_LIMIT_EXCEEDED` instead) or, for a `ping`, a `pong`;
- CLOSE: a protocol-level violation, answered by a close frame with one of `codes` (an oversize
  message is closed with 1009 "message too big"; the socket cannot usefully stay open after it).
The garbage of a script holds no valid silent frame, so every REPLY shot is counted exactly.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from tests.chaos.fuzz_clients import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    ws_frame,
)

MIB = 1 << 20
APP_MAX_FRAME_CHARS = 64 * 1024  # ws_session.MAX_FRAME_CHARS: above it A and B answer `error`
WS_MAX_MESSAGE = 16 * MIB  # uvicorn's ws_max_size: above it any socket is closed with 1009
EIO_MAX_PACKET = 1_000_000  # Engine.IO's max_http_buffer_size (Socket.IO packets)


class Expect(Enum):
    REPLY = "reply"
    CLOSE = "close"


@dataclass(frozen=True)
class Shot:
    label: str
    payload: str | bytes
    expect: Expect = Expect.REPLY
    codes: frozenset[int] = field(default_factory=frozenset)

    @property
    def size(self) -> int:
        return len(self.payload)


def close_shot(label: str, payload: str | bytes, *codes: int) -> Shot:
    return Shot(label, payload, Expect.CLOSE, frozenset(codes))


# Random material -------------------------------------------------------------------------------
def random_text(rng: random.Random, length: int) -> str:
    """Printable ASCII, control characters, any BMP character but surrogates, some astral ones."""
    pools = (
        string.printable,
        "".join(map(chr, range(32))),
        '{}[]":,\\',
    )
    out = []
    for _ in range(length):
        roll = rng.random()
        if roll < 0.6:
            out.append(rng.choice(rng.choice(pools)))
        elif roll < 0.9:
            code = rng.randrange(0x80, 0xD800)
            out.append(chr(code))
        else:
            out.append(chr(rng.randrange(0x10000, 0x110000)))
    return "".join(out)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value orjson can write."""
    roll = rng.randrange(9 if depth < 4 else 6)
    if roll == 0:
        return None
    if roll == 1:
        return rng.choice((True, False))
    if roll == 2:
        return rng.randrange(-(2**63), 2**63)
    if roll == 3:
        return rng.uniform(-1e300, 1e300)
    if roll in (4, 5):
        return random_text(rng, rng.randrange(0, 60))
    if roll in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {random_text(rng, rng.randrange(0, 12)): random_value(rng, depth + 1) for _ in range(3)}


def not_a_string(rng: random.Random) -> Any:
    value = random_value(rng)
    return value if not isinstance(value, str) else [value]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def unknown_phone(rng: random.Random) -> str:
    """A well-formed Brazilian mobile (Rio) no conversation of the fuzz tenant has."""
    return "55219" + "".join(rng.choice(string.digits) for _ in range(8))


def deep(rng: random.Random) -> str:
    """Nesting around orjson's limit (1024) and Python's recursion limit (1000)."""
    depth = rng.choice((rng.randrange(900, 1100), rng.randrange(1100, 30_000)))
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return '{"type":' + inner + "}" if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth


def mutate(rng: random.Random, text: str) -> str:
    """Break a JSON text for sure (a valid frame would get no error): truncate it, insert a raw
    NUL (invalid in and out of strings), add a trailing comma, or quote a key with '."""
    if len(text) < 2:
        return text + "{"
    cut = rng.randrange(1, len(text))
    roll = rng.randrange(4)
    if roll == 0:
        return text[:cut]
    if roll == 1:
        return text[:cut] + "\x00" + text[cut:]
    if roll == 2:
        return text[:-1] + ",}"
    return text.replace('"', "'", 1)


# Dialects A and B ------------------------------------------------------------------------------
def common_garbage(rng: random.Random) -> Shot:
    """Malformed frames that mean the same thing on both plain-WebSocket dialects."""
    roll = rng.randrange(8)
    if roll == 0:
        return Shot("binary", rng.randbytes(rng.randrange(0, 4096)))
    if roll == 1:
        return Shot("random text", random_text(rng, rng.randrange(1, 2000)))
    if roll == 2:
        return Shot("wrong JSON type", dumps(rng.choice(([], [1, {"type": "ping"}], 0, None, "x"))))
    if roll == 3:
        return Shot("random JSON", dumps(random_value(rng)) + rng.choice(("", " ", "\n")))
    if roll == 4:
        return Shot("deep JSON", deep(rng))
    if roll == 5:
        kind = rng.choice((random_value(rng), random_text(rng, 30), "", "PING", "ping "))
        extra = {random_text(rng, 8): random_value(rng) for _ in range(rng.randrange(0, 4))}
        return Shot("unknown type", dumps({**extra, "type": kind}))
    if roll == 6:
        body = rng.randrange(APP_MAX_FRAME_CHARS, 4 * APP_MAX_FRAME_CHARS)
        return Shot("over 64 KiB", dumps({"type": "ping", "pad": "p" * body}))
    extra = {random_text(rng, 8): random_value(rng) for _ in range(rng.randrange(1, 4))}
    return Shot("ping with extra fields", dumps({**extra, "type": "ping"}))


def chat_garbage(rng: random.Random, own_phone: str) -> Shot:
    """Dialect A: its known frame types with wrong, missing or extra fields."""
    phone = rng.choice((unknown_phone(rng), own_phone))
    bad_text = rng.choice(
        (
            "",
            "   \n\t",
            "<b></b><script></script>",
            "x" * rng.randrange(4097, 60_000),
            not_a_string(rng),
        )
    )
    frames: list[tuple[str, dict[str, Any]]] = [
        ("send_message, no text", {"type": "send_message", "phone_number": phone}),
        (
            "send_message, bad text",
            {"type": "send_message", "phone_number": phone, "text": bad_text},
        ),
        (
            "send_message, bad phone",
            {"type": "send_message", "phone_number": bad_phone(rng), "text": "oi"},
        ),
        ("mark_as_read, bad phone", {"type": "mark_as_read", "phone_number": bad_phone(rng)}),
        (
            "mark_as_read, unknown phone",
            {"type": "mark_as_read", "phone_number": unknown_phone(rng)},
        ),
        ("typing, unknown phone", {"type": "typing", "phone_number": unknown_phone(rng)}),
        ("typing, no phone", {"type": "typing", "is_typing": True}),
        (
            "typing, is_typing not a boolean",
            {"type": "typing", "phone_number": own_phone, "is_typing": wrong_bool(rng)},
        ),
    ]
    if rng.random() < 0.5:
        return common_garbage(rng)
    label, frame = rng.choice(frames)
    return Shot(label, dumps(frame) if rng.random() < 0.85 else mutate(rng, dumps(frame)))


def bad_phone(rng: random.Random) -> Any:
    return rng.choice(
        (
            "",
            "abc",
            "+",
            "1",
            "0" * 40,
            "5511" + "9" * 30,
            "120363025246125486@g.us",
            "1234567890@lid",
            random_text(rng, 20),
            not_a_string(rng),
        )
    )


def wrong_bool(rng: random.Random) -> Any:
    return rng.choice(("false", "true", 0, 1, [], {}, [False], None, "", 0.0))


def conversations_garbage(rng: random.Random, own_conversation: str) -> Shot:
    """Dialect B: typing_start / typing_stop with wrong, missing or extra fields."""
    if rng.random() < 0.5:
        return common_garbage(rng)
    kind = rng.choice(("typing_start", "typing_stop"))
    conversation: Any = rng.choice(
        (
            str(uuid.UUID(int=rng.getrandbits(128))),
            own_conversation[:-1],  # one hex digit short
            own_conversation + "0",
            "",
            "not-a-uuid",
            not_a_string(rng),
        )
    )
    frame = {"type": kind, "conversation_id": conversation}
    return Shot(f"{kind}, bad conversation_id", dumps(frame))


def huge_frame(rng: random.Random) -> Shot:
    """2-15 MiB: under uvicorn's 16 MiB limit, so A and B must read it and answer `error`."""
    size = rng.randrange(2 * MIB, 15 * MIB)
    if rng.random() < 0.3:
        return Shot(f"{size >> 20} MiB binary", rng.randbytes(1024) * (size // 1024))
    return Shot(f"{size >> 20} MiB text", '{"type":"send_message","text":"' + "a" * size + '"}')


def oversize(rng: random.Random) -> Shot:
    size = rng.randrange(WS_MAX_MESSAGE + 1, WS_MAX_MESSAGE + 4 * MIB)
    return close_shot(f"{size >> 20} MiB, over the message limit", "o" * size, 1009)


# Dialect C: Socket.IO packets inside Engine.IO MESSAGE packets ("4...") --------------------------
SIO_EVENTS = ("join_conversation", "leave_conversation", "typing_start", "typing_stop")


def socketio_garbage(rng: random.Random, own_conversation: str) -> Shot:
    roll = rng.random()
    if roll < 0.35:
        return sio_protocol_garbage(rng)
    if roll < 0.75:
        return sio_bad_event(rng, own_conversation)
    if roll < 0.85:
        return Shot("binary frame", rng.randbytes(rng.randrange(1, 4096)))
    if roll < 0.9:
        size = rng.randrange(APP_MAX_FRAME_CHARS, EIO_MAX_PACKET - 100)
        return Shot(
            "join, huge id", "42" + dumps(["join_conversation", {"conversation_id": "9" * size}])
        )
    extra = [random_value(rng) for _ in range(rng.randrange(1, 4))]
    return Shot("ping with extra args", "42" + dumps(["ping", *extra]))


def sio_bad_event(rng: random.Random, own_conversation: str) -> Shot:
    name = rng.choice(SIO_EVENTS)
    data = rng.choice(
        (
            None,
            random_value(rng),
            {"conversation_id": not_a_string(rng)},
            {"conversation_id": random_text(rng, 36)},
            {"conversation_id": str(uuid.UUID(int=rng.getrandbits(128)))},
            {"conversation_id": own_conversation + "x"},
        )
    )
    if name == "leave_conversation" and isinstance(data, dict):
        data = {"conversation_id": not_a_string(rng)}  # any UUID may be left: that is valid
    if rng.random() < 0.2:
        name = random_text(rng, rng.randrange(1, 30))  # an event the server does not know
    body = [name] if data is None else [name, data]
    return Shot(f"event {name[:20]!r}, bad data", "42" + dumps(body))


def sio_protocol_garbage(rng: random.Random) -> Shot:
    """Socket.IO packets that decode badly, name no event, or claim things they do not carry."""
    packets = (
        ("empty Socket.IO packet", "4"),
        ("unknown Socket.IO type", "4" + rng.choice("789x-/ ")),
        ("EVENT without data", "42"),
        ("EVENT, broken JSON", "42" + mutate(rng, '["ping",{"a":1}]')),
        ("EVENT, empty array", "42[]"),
        ("EVENT, object", '42{"0":"ping"}'),
        ("EVENT, string", '42"ping"'),
        ("EVENT, null", "42null"),
        ("EVENT, name not a string", "42" + dumps([not_a_string(rng), {}])),
        ("EVENT, bad namespace", '42/nope,["ping"]'),
        ("EVENT, bad ack id", '42abc["ping"]'),
        ("EVENT, ack id too long", "42" + "9" * 120 + '["ping"]'),
        ("EVENT, reserved name", "42" + dumps([rng.choice(("connect", "disconnect", "*")), {}])),
        ("unsolicited ACK", "43" + str(rng.randrange(0, 10**6)) + '["x"]'),
        ("ACK without id", '43["x"]'),
        ("CONNECT_ERROR from a client", '44{"message":"x"}'),
        ("BINARY_EVENT, attachment never sent", '451-["ping",{"_placeholder":true,"num":0}]'),
        ("BINARY_EVENT, 999999999 attachments", '45999999999-["ping"]'),
        ("BINARY_ACK claim", '461-1[{"_placeholder":true,"num":0}]'),
        ("CONNECT to an unknown namespace", "40/nope,{}"),
        ("second CONNECT, bad token", '40{"token":"not-a-jwt"}'),
        ("base64 binary MESSAGE", "b" + "QUJD"),
    )
    label, text = rng.choice(packets)
    return Shot(label, text)


def sio_big(rng: random.Random) -> Shot:
    """The biggest Socket.IO packet Engine.IO lets through (just under 1 MB): a bad event."""
    size = rng.randrange(EIO_MAX_PACKET // 2, EIO_MAX_PACKET - 100)
    payload = "42" + dumps(["join_conversation", {"conversation_id": "9" * size}])
    return Shot(f"{size >> 10} KiB join_conversation", payload)


def eio_terminal(rng: random.Random) -> Shot:
    """Engine.IO packets that are not Engine.IO: a protocol error, so a close with a reason."""
    label, text = rng.choice(
        (
            ("empty Engine.IO packet", ""),
            ("unknown Engine.IO type", rng.choice("789xZ{€")),
            ("bad base64 binary", "bQ"),
        )
    )
    return close_shot(label, text, 1002, 1003)


def sio_oversize(rng: random.Random) -> Shot:
    size = rng.randrange(EIO_MAX_PACKET + 1, 3 * MIB)
    return close_shot(f"{size >> 10} KiB Socket.IO packet", "42" + "o" * size, 1009)


@dataclass(frozen=True)
class PollShot:
    """A long-polling POST body: not Engine.IO (400, like a WebSocket's 1002), or Engine.IO
    carrying a bad Socket.IO packet (200, then an `error` event on the next GET)."""

    label: str
    body: str | bytes
    status: int


def polling_shot(rng: random.Random) -> PollShot:
    if rng.random() < 0.5:
        shot = sio_protocol_garbage(rng)
        return PollShot(shot.label, shot.payload, 200)
    label, body = rng.choice(
        (
            ("not Engine.IO", "x" + random_text(rng, 10)),
            ("unknown Engine.IO type", rng.choice("789")),
            ("bad base64", "bQ"),
            ("empty packets", "\x1e\x1e"),
            ("invalid UTF-8", b"42\xff\xfe"),
            ("17 packets", "\x1e".join(["3"] * 17)),
            ("JSONP form without d", "d="),
        )
    )
    return PollShot(label, body, 400)


# Raw WebSocket frames ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RawShot:
    label: str
    data: bytes
    codes: frozenset[int | None]
    eof: bool = False
    uvicorn_utf8: bool = False  # closed 1007 without a reason (see UVICORN_UTF8 in the test)


def raw_shots() -> list[RawShot]:
    """Frames no WebSocket library sends; the server must close with the RFC 6455 code."""
    proto = frozenset({1002})
    return [
        RawShot("unmasked frame", ws_frame(OP_TEXT, b'{"type":"ping"}', masked=False), proto),
        RawShot("RSV1 without an extension", ws_frame(OP_TEXT, b"{}", rsv=4), proto),
        RawShot("reserved data opcode", ws_frame(0x3, b"{}"), proto),
        RawShot("reserved control opcode", ws_frame(0xB, b""), proto),
        RawShot("fragmented ping", ws_frame(OP_PING, b"x", fin=False), proto),
        RawShot("126-byte ping", ws_frame(OP_PING, b"p" * 126), proto),
        RawShot("continuation first", ws_frame(OP_CONT, b"{}"), proto),
        RawShot(
            "text frame inside a fragmented message",
            ws_frame(OP_TEXT, b"{", fin=False) + ws_frame(OP_TEXT, b"}"),
            proto,
        ),
        RawShot(
            "invalid UTF-8",
            ws_frame(OP_TEXT, b'{"type":"\xff\xfe"}'),
            frozenset({1007}),
            uvicorn_utf8=True,
        ),
        RawShot(
            "2^62-byte length claimed",
            ws_frame(OP_BINARY, b"", claimed_length=1 << 62),
            frozenset({1009}),
        ),
        RawShot("close code 999", ws_frame(OP_CLOSE, (999).to_bytes(2, "big")), proto),
        RawShot("close code 1005", ws_frame(OP_CLOSE, (1005).to_bytes(2, "big")), proto),
        RawShot("one-byte close payload", ws_frame(OP_CLOSE, b"\x03"), proto),
        RawShot(
            "close reason not UTF-8",
            ws_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"\xc3\x28"),
            frozenset({1007}),
        ),
        RawShot(
            "truncated frame, then EOF",
            ws_frame(OP_TEXT, b"x" * 1000)[:20],
            frozenset({None, 1002, 1006}),
            eof=True,
        ),
    ]
