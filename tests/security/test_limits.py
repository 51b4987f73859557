"""Issue 10 item 9: no limits on what a client sent.

A 50 MB unauthenticated webhook was read and parsed before anything else; bodies and headers
could trickle in forever; a 2 KB nested JSON with `\\u0000` gave a 500 and 300 KB of traceback.
Now: a declared body over the cap is refused with 413 before a byte of it is read, a chunked one
is cut at the cap, a slow body gets 408, slow headers get 408 and the connection closed (all on
real sockets against a real uvicorn), and the nested JSON is a clean 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
import pytest_asyncio

from atende.config import MiB
from tests.harness import WAIT_SECS, Server, Tenant, make_tenant, run_server, settings_for

SMALL_BODY = 64 * 1024
SMALL_WEBHOOK_BODY = 256 * 1024
SLOW_SECS = 1.0
TRICKLE_SECS = 0.2  # the attacker's pace: each byte well inside any per-read timeout


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after answering


@pytest_asyncio.fixture(loop_scope="session")
async def strict_server(database_url: str) -> AsyncIterator[Server]:
    """A server with small caps and one-second timeouts, so the tests stay quick."""
    settings = settings_for(
        database_url,
        max_body_bytes=SMALL_BODY,
        max_webhook_body_bytes=SMALL_WEBHOOK_BODY,
        body_read_timeout_secs=SLOW_SECS,
        header_read_timeout_secs=SLOW_SECS,
    )
    async with run_server(settings) as running:
        yield running


def _port(server: Server) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


async def _connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", _port(server))


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def _read_answer(reader: asyncio.StreamReader, timeout: float = WAIT_SECS) -> Answer:
    async with asyncio.timeout(timeout):
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        closed = await reader.read(1) == b""
    return Answer(int(status_line.split()[1]), headers, body, closed)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):  # the server may reset a connection it refused
        await writer.wait_closed()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _sandbox_webhook(tenant: Tenant, text: str) -> bytes:
    return orjson.dumps(
        {"session": tenant.session_name, "from": "5511987650001", "text": text, "id": text[:40]}
    )


# -- size ----------------------------------------------------------------------------------------
async def test_50mb_webhook_is_refused_before_its_body_is_read(server: Server) -> None:
    """Six at once used to add 300 MB; now each gets 413 on its headers alone, fast."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()

    async def one() -> Answer:
        reader, writer = await _connect(server)
        head = _head(
            "POST",
            "/api/webhooks/sandbox",
            "Content-Type: application/json",
            f"Content-Length: {50 * 1000 * 1000}",
        )
        writer.write(head)  # and not one byte of the body: the answer must not wait for it
        try:
            return await _read_answer(reader)
        finally:
            await _close(writer)

    answers = await asyncio.gather(*(one() for _ in range(6)))
    elapsed = time.monotonic() - started
    for answer in answers:
        assert answer.status == 413
        assert orjson.loads(answer.body)["error_code"] == "PAYLOAD_TOO_LARGE"
        assert answer.closed
    assert elapsed < 2.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 50 * 1024  # (the server runs in this process)


async def test_declared_body_over_the_json_cap_is_413(server: Server) -> None:
    reader, writer = await _connect(server)
    length = f"Content-Length: {MiB + 1}"
    writer.write(_head("POST", "/api/v1/auth/login", "Content-Type: application/json", length))
    answer = await _read_answer(reader)
    await _close(writer)
    assert answer.status == 413
    assert orjson.loads(answer.body)["details"] == {"max_bytes": MiB}


@pytest.mark.parametrize(
    ("path", "cap"),
    [("/api/v1/auth/login", SMALL_BODY), ("/api/webhooks/sandbox", SMALL_WEBHOOK_BODY)],
)
async def test_chunked_body_past_the_cap_is_cut(strict_server: Server, path: str, cap: int) -> None:
    """No Content-Length to trust: the bytes are counted as they stream in."""
    reader, writer = await _connect(strict_server)
    writer.write(
        _head("POST", path, "Content-Type: application/json", "Transfer-Encoding: chunked")
    )
    piece = b"x" * 16 * 1024
    for _ in range(cap // len(piece) + 1):
        writer.write(_chunk(piece))
    await writer.drain()
    answer = await _read_answer(reader)
    await _close(writer)
    assert answer.status == 413
    assert orjson.loads(answer.body) == {
        "error_code": "PAYLOAD_TOO_LARGE",
        "message": f"The request body is limited to {cap} bytes",
        "details": {"max_bytes": cap},
    }
    assert answer.closed


async def test_chunked_webhook_under_the_cap_is_stored(strict_server: Server) -> None:
    tenant = await make_tenant(strict_server)
    body = _sandbox_webhook(tenant, "oi " + "a" * (SMALL_BODY * 2))  # past the JSON cap: a webhook
    reader, writer = await _connect(strict_server)
    writer.write(
        _head(
            "POST",
            "/api/webhooks/sandbox",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
            f"X-Webhook-Secret: {tenant.webhook_secret}",
        )
    )
    for start in range(0, len(body), 16 * 1024):
        writer.write(_chunk(body[start : start + 16 * 1024]))
    writer.write(b"0\r\n\r\n")
    answer = await _read_answer(reader)
    await _close(writer)
    assert answer.status != 413, answer.body
    assert answer.status < 500, answer.body


# -- pace ----------------------------------------------------------------------------------------
async def test_slow_body_is_cut_with_408(strict_server: Server) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the whole body has a deadline."""
    reader, writer = await _connect(strict_server)
    writer.write(
        _head("POST", "/api/v1/auth/login", "Content-Type: application/json", "Content-Length: 100")
    )
    started = time.monotonic()
    answer_task = asyncio.create_task(_read_answer(reader, timeout=SLOW_SECS + WAIT_SECS))
    while not answer_task.done() and time.monotonic() - started < SLOW_SECS * 5:
        writer.write(b"{")
        await asyncio.wait({answer_task}, timeout=TRICKLE_SECS)
    answer = await answer_task
    await _close(writer)
    assert answer.status == 408
    assert orjson.loads(answer.body)["error_code"] == "REQUEST_TIMEOUT"
    assert answer.closed
    assert SLOW_SECS * 0.9 <= time.monotonic() - started < SLOW_SECS * 4  # (timer granularity)


async def test_slow_headers_are_cut(strict_server: Server) -> None:
    """A header line now and then (slow loris) used to hold the connection forever."""
    started = time.monotonic()  # the server's clock starts when the connection is made
    reader, writer = await _connect(strict_server)
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answer_task = asyncio.create_task(_read_answer(reader, timeout=SLOW_SECS + WAIT_SECS))
    count = 0
    while not answer_task.done() and time.monotonic() - started < SLOW_SECS * 5:
        writer.write(f"X-Loris-{count}: 1\r\n".encode())
        count += 1
        await asyncio.wait({answer_task}, timeout=TRICKLE_SECS)
    answer = await answer_task
    await _close(writer)
    assert answer.status == 408
    assert answer.closed
    assert SLOW_SECS * 0.9 <= time.monotonic() - started < SLOW_SECS * 4  # (timer granularity)


async def test_endless_headers_are_cut_at_the_cap(strict_server: Server) -> None:
    """httptools sets no limit: 160 MB of header lines were taken in (and held) until now."""
    cap = strict_server.settings.max_header_bytes
    reader, writer = await _connect(strict_server)
    line = b"X-Big: " + b"a" * 1000 + b"\r\n"
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + line * (cap // len(line) + 1))
    await writer.drain()
    answer = await _read_answer(reader)
    await _close(writer)
    assert answer.status == 431
    assert orjson.loads(answer.body)["details"] == {"max_bytes": cap}
    assert answer.closed


async def test_silent_connection_is_closed(strict_server: Server) -> None:
    reader, writer = await _connect(strict_server)
    answer = await _read_answer(reader, timeout=SLOW_SECS + WAIT_SECS)
    await _close(writer)
    assert answer.status == 408
    assert answer.closed


async def test_keep_alive_requests_still_work(strict_server: Server) -> None:
    """The header clock restarts per request: two prompt requests on one connection succeed."""
    reader, writer = await _connect(strict_server)
    for _ in range(2):
        writer.write(_head("GET", "/health"))
        answer = await _read_answer_keep_open(reader)
        assert answer.status == 200
    await _close(writer)


async def _read_answer_keep_open(reader: asyncio.StreamReader) -> Answer:
    async with asyncio.timeout(WAIT_SECS):
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split()[1]), headers, body, closed=False)


# -- shape ---------------------------------------------------------------------------------------
NESTED_NUL = b"[" * 1000 + b'"\\u0000"' + b"]" * 1000  # 2 KB, deeper than Python recursion


async def test_nested_json_with_nul_is_a_clean_400(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with tenant.http() as http:
        rest = await http.post(
            "/api/v1/auth/login", content=NESTED_NUL, headers={"Content-Type": "application/json"}
        )
        nested = b'{"session": "%s", "from": "5511987650002", "text": "oi", "x": %s}' % (
            tenant.session_name.encode(),
            NESTED_NUL,
        )
        webhook = await http.post(
            "/api/webhooks/sandbox",
            content=nested,
            headers={"Content-Type": "application/json", "X-Webhook-Secret": tenant.webhook_secret},
        )
    assert rest.status_code == 400, rest.text
    assert rest.json()["error_code"] == "INVALID_INPUT"
    assert webhook.status_code < 500, webhook.text
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a bad body"
