"""How uvicorn serves Atende: the one place that builds its Config (used by `serve` and tests).

uvicorn (as of 0.55) has a keep-alive timeout but none for the request head: a client that opens
a connection and sends a header line now and then holds it, and a task, forever (slow loris).
`header_deadline_protocol` adds one at the protocol level: from the moment a connection opens, or
a response ends, the next request's headers must be complete within `header_read_timeout_secs`,
else the server answers 408 and closes. httptools also has no cap on the head's size (160 MB of
headers were taken in, and held): past `max_header_bytes` the answer is 431. Slow or large
*bodies* are cut by `atende.limits` instead.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from atende.config import Settings
from atende.errors import AtendeError, HeadersTooLarge, RequestTimeout

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
    HTTP_BASE: type[asyncio.Protocol] = H11Protocol
else:
    HTTP_BASE = HttpToolsProtocol

logger = logging.getLogger(__name__)
_NOT_ARMED = object()


class _HeaderDeadline(asyncio.Protocol):
    """Mixed in before uvicorn's protocol class: a timer from idle until the headers are in."""

    header_timeout_secs: ClassVar[float] = 10.0
    max_head_bytes: ClassVar[int] = 64 * 1024
    _head_bytes = 0
    _header_timer: asyncio.TimerHandle | None = None
    _armed_for: object = _NOT_ARMED  # the cycle that was current when armed (None at first)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # A new request cycle means its headers were parsed; an upgrade hands the socket over.
        if self._current_cycle() is not self._armed_for or not self._still_ours():
            self._disarm()
        elif self._header_timer is not None:
            self._head_bytes += len(data)  # all of it is still the request head
            if self._head_bytes > self.max_head_bytes:
                self._refuse(
                    HeadersTooLarge(
                        f"Request headers are limited to {self.max_head_bytes} bytes",
                        details={"max_bytes": self.max_head_bytes},
                    )
                )

    def on_response_complete(self) -> None:
        finished = self._current_cycle()
        super().on_response_complete()  # type: ignore[misc]
        if self._current_cycle() is finished and not self._transport().is_closing():
            self._arm()  # nothing pipelined: the next request's headers are on the clock

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self._current_cycle()
        self._head_bytes = 0
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self.header_timeout_secs, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._armed_for = _NOT_ARMED

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._transport().is_closing() or not self._still_ours():
            return
        logger.info("closing a connection: request headers took over %ss", self.header_timeout_secs)
        self._refuse(
            RequestTimeout(
                f"The request headers did not arrive within {self.header_timeout_secs:g} s",
                details={"timeout_secs": self.header_timeout_secs},
            )
        )

    def _refuse(self, error: AtendeError) -> None:
        """Answer a request whose head never completed, and close."""
        self._disarm()
        transport = self._transport()
        transport.write(_answer(error))
        transport.close()

    def _current_cycle(self) -> object:
        return getattr(self, "cycle", None)

    def _transport(self) -> asyncio.Transport:
        transport: asyncio.Transport = getattr(self, "transport")  # noqa: B009 - set by uvicorn
        return transport

    def _still_ours(self) -> bool:
        return self._transport().get_protocol() is self


def _answer(error: AtendeError) -> bytes:
    body = orjson.dumps(error.to_dict())
    reason = HTTPStatus(error.http_status).phrase
    head = (
        f"HTTP/1.1 {error.http_status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def header_deadline_protocol(
    timeout_secs: float, max_head_bytes: int, base: type[asyncio.Protocol] = HTTP_BASE
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools, else h11) with the header deadline and cap."""
    name = f"HeaderDeadline{base.__name__}"
    limits = {"header_timeout_secs": timeout_secs, "max_head_bytes": max_head_bytes}
    return type(name, (_HeaderDeadline, base), limits)


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn.Config for `app`, with the header deadline and no per-message deflate."""
    options.setdefault("ws_per_message_deflate", False)  # ~300 KiB per socket otherwise (SPEC §9)
    return uvicorn.Config(
        app,
        http=header_deadline_protocol(settings.header_read_timeout_secs, settings.max_header_bytes),
        **options,
    )
