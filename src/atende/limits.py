"""What a client may send: body size and pace, enforced before any route reads a byte.

A pure ASGI middleware (issue 10, item 9). A declared `Content-Length` over the cap is refused
with 413 before the body is read at all; a chunked or lying body is counted as it streams and
cut at the cap; a body that trickles in slower than `body_read_timeout_secs` allows is cut with
408. Both answers close the connection, so the rest of the body is never read.
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atende.config import Settings
from atende.errors import AtendeError, PayloadTooLarge, RequestTimeout

# Gateways post here, and some of them inline the media (base64) in the JSON.
WEBHOOK_PREFIX = "/api/webhooks/"


class _BodyRefused(Exception):
    """Raised into the app from `receive`: the body will not be delivered whole."""


class _GuardedBody:
    """`receive` for one request: counts the bytes and keeps the deadline until the body ends."""

    def __init__(self, receive: Receive, *, limit: int, timeout_secs: float) -> None:
        self._receive = receive
        self._limit = limit
        self._deadline = asyncio.get_running_loop().time() + timeout_secs
        self._timeout_secs = timeout_secs
        self._seen = 0
        self._complete = False
        self.refusal: AtendeError | None = None

    async def receive(self) -> Message:
        if self.refusal is not None:
            raise _BodyRefused
        if self._complete:  # later calls wait for http.disconnect: no deadline for that
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self.refusal = RequestTimeout(
                f"The request body did not arrive within {self._timeout_secs:g} s",
                details={"timeout_secs": self._timeout_secs},
            )
            raise _BodyRefused from None
        if message["type"] == "http.request":
            self._count(message)
        return message

    def _count(self, message: Message) -> None:
        self._seen += len(message.get("body", b""))
        if self._seen > self._limit:
            self.refusal = too_large(self._limit)
            raise _BodyRefused
        self._complete = not message.get("more_body", False)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is limited to {limit} bytes", details={"max_bytes": limit}
    )


class BodyLimits:
    """Caps every HTTP request body; webhook routes get their own, larger cap."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.max_body_bytes = settings.max_body_bytes
        self.max_webhook_body_bytes = settings.max_webhook_body_bytes
        self.timeout_secs = settings.body_read_timeout_secs

    def limit_for(self, path: str) -> int:
        if path.startswith(WEBHOOK_PREFIX):
            return self.max_webhook_body_bytes
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared, chunked = _framing(scope)
        if declared is not None and declared > limit:
            await refuse(send, too_large(limit))
            return
        if not declared and not chunked:  # no body at all (RFC 9112 §6.3): nothing to guard
            await self.app(scope, receive, send)
            return
        await self._guarded(scope, receive, send, limit)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        body = _GuardedBody(receive, limit=limit, timeout_secs=self.timeout_secs)
        started = False

        async def send_unless_refused(message: Message) -> None:
            nonlocal started
            if body.refusal is not None:
                return  # the app's answer to a body it never got whole (often a 400): ours wins
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body.receive, send_unless_refused)
        except Exception:
            if body.refusal is None:
                raise
        if body.refusal is not None and not started:
            await refuse(send, body.refusal)


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None if absent or unreadable) and whether it is chunked."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                chunked = True  # the HTTP parser refuses these; guard whatever comes
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


async def refuse(send: Send, error: AtendeError) -> None:
    """Answer with the error as JSON and close the connection (the body stays unread)."""
    body = orjson.dumps(error.to_dict())
    await send(
        {
            "type": "http.response.start",
            "status": error.http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
