"""Run Starlette apps on real loopback HTTP inside the test's event loop, and the base of every
fake gateway: request recording, auth check, programmable failures, webhook delivery."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]
AnswerHook = Callable[["RecordedRequest", Response], Awaitable[None]]
# A 1x1 PNG: what the fakes hand out as a QR code.
QR_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBg"
    "AAAABQABpfZFQAAAAABJRU5ErkJggg=="
)
DELIVERY_ATTEMPTS = 3  # real gateways retry more, but a test wants a bounded, quick answer
# A real gateway's webhook retry policy (Evolution: 10 attempts, exponential backoff).
BACKOFF_ATTEMPTS = 10
BACKOFF_FIRST_SECS = 0.1
BACKOFF_MAX_SECS = 1.0
# Built once: loading the CA bundle costs ~50 ms per httpx client, and webhooks go to loopback.
CLIENT_SSL = ssl.create_default_context()


def loopback_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client that does not reload the CA bundle each time it is made."""
    return httpx.AsyncClient(verify=CLIENT_SSL, **kwargs)


class _Server(uvicorn.Server):
    """uvicorn.Server that signals readiness with an event instead of being polled."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """`async with serve_app(app) as base_url:` serves `app` on 127.0.0.1 on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", ws="none", http="h11", log_level="warning", access_log=False
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        await task  # re-raises why uvicorn could not start
        raise RuntimeError("uvicorn exited before it started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    query: dict[str, str]
    json: Any = None
    body: bytes = b""
    fault: Fault | None = None  # what a Chaos knob made of this call (None: no knob)
    received_at: float = 0.0  # time.monotonic() when the request came in


@dataclass
class _Failure:
    status: int
    body: Any


class Fault(StrEnum):
    """What a chaotic gateway does with one API call."""

    NONE = "none"  # answers normally
    ERROR = "error"  # answers 500 without doing anything
    LOST = "lost"  # never processes the request and never answers: a client timeout
    LATE = "late"  # does the work (e.g. sends the message), answers after the client gave up
    HANG = "hang"  # does the work, never answers: a client timeout after a real send


ACCEPTING_FAULTS = frozenset({Fault.NONE, Fault.LATE, Fault.HANG})  # the work gets done
# Half plain 500s, half timeouts; most timeouts come after the work was done (the ambiguous kind).
FAULT_MIX = {Fault.ERROR: 0.5, Fault.LOST: 0.1, Fault.LATE: 0.25, Fault.HANG: 0.15}


@dataclass
class Chaos:
    """A failure-injection knob: `rate` of the calls go wrong, split by `weights`.

    The draw for a call depends only on the seed, the call (method, path, body) and how many
    times that same call was seen before, never on the interleaving of concurrent requests, so
    one seed gives every message the same fate in every run.
    """

    rate: float
    seed: int = 0
    late_secs: float = 5.0  # how late a LATE answer comes; set above the client's timeout
    weights: Mapping[Fault, float] = field(default_factory=lambda: dict(FAULT_MIX))
    drawn: Counter[Fault] = field(default_factory=Counter)
    _seen: Counter[str] = field(default_factory=Counter)

    def draw(self, record: RecordedRequest) -> Fault:
        call = f"{record.method} {record.path} ".encode() + record.body
        key = hashlib.sha256(call).hexdigest()
        self._seen[key] += 1
        rng = random.Random(f"{self.seed}:{key}:{self._seen[key]}")
        fault = Fault.NONE
        if rng.random() < self.rate:
            faults = list(self.weights)
            fault = rng.choices(faults, weights=[self.weights[f] for f in faults])[0]
        self.drawn[fault] += 1
        return fault


@dataclass
class FakeGateway:
    """Common machinery; subclasses add `routes()` and their auth header."""

    api_key: str = "gw-key"
    requests: list[RecordedRequest] = field(default_factory=list)
    unknown_numbers: set[str] = field(default_factory=set)
    base_url: str = ""
    # Awaited after an endpoint answered and before the answer is sent: lets a test make the
    # gateway post a webhook (e.g. an ack) before its API caller has seen the answer.
    on_answer: AnswerHook | None = None
    chaos: Chaos | None = None  # random failures, for chaos tests
    _failures: list[_Failure] = field(default_factory=list)
    _hangs: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    # -- to override ---------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> Response:
        return JSONResponse({"message": "Unauthorized"}, status_code=401)

    def webhook_headers(self, raw_body: bytes) -> dict[str, str]:
        return {}

    def final_statuses(self) -> set[int]:
        """Non-2xx statuses the gateway does not retry a webhook on."""
        return set()

    # -- programmable behaviour ------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, body: Any = None) -> None:
        body = body if body is not None else {"message": f"injected failure {status}"}
        self._failures.extend(_Failure(status, body) for _ in range(n))

    def hang_next(self, n: int = 1) -> None:
        """The next n requests never get an answer (until the fake stops): client timeouts."""
        self._hangs += n

    def set_unknown_numbers(self, numbers: set[str]) -> None:
        self.unknown_numbers = set(numbers)

    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def find(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- serving ---------------------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route(r.path, self._wrap(r.endpoint), methods=r.methods, name=r.name)
            for r in self.routes()
        ]
        return Starlette(routes=routes)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        self._release = asyncio.Event()
        async with serve_app(self.app()) as base_url:
            self.base_url = base_url
            try:
                yield base_url
            finally:
                self._release.set()  # let hung handlers finish so uvicorn can shut down

    def _wrap(self, endpoint: Callable[..., Any]) -> Handler:
        async def handler(request: Request) -> Response:
            received_at = time.monotonic()
            try:
                raw = await request.body()
            except ClientDisconnect:  # the caller died mid-request (a chaos test's SIGKILL)
                return Response(status_code=499)
            record = _record(request, raw)
            record.received_at = received_at
            self.requests.append(record)
            if self._hangs:
                self._hangs -= 1
                await self._release.wait()
                return Response(status_code=504)
            if self._failures:
                failure = self._failures.pop(0)
                return JSONResponse(failure.body, status_code=failure.status)
            if not self.authorized(request):
                return self.unauthorized()
            record.fault = None if self.chaos is None else self.chaos.draw(record)
            fault = record.fault or Fault.NONE
            if fault is Fault.ERROR:
                return JSONResponse({"message": "injected chaos failure"}, status_code=500)
            if fault is Fault.LOST:
                await self._release.wait()
                return Response(status_code=504)
            response: Response = await endpoint(request)
            if self.on_answer is not None:
                await self.on_answer(record, response)
            return await self._answer_after(fault, response)

        return handler

    async def _answer_after(self, fault: Fault, response: Response) -> Response:
        """The work is done; a LATE answer comes after `late_secs`, a HANG one never."""
        if fault is Fault.HANG:
            await self._release.wait()
        elif fault is Fault.LATE:
            assert self.chaos is not None
            with contextlib.suppress(TimeoutError):  # simulated latency, cut short at shutdown
                await asyncio.wait_for(self._release.wait(), self.chaos.late_secs)
        return response

    # -- webhooks --------------------------------------------------------------------------------
    async def deliver(
        self, url: str, payload: Any, attempts: int = DELIVERY_ATTEMPTS
    ) -> httpx.Response:
        """POST a webhook like the gateway does; retry (boundedly, at once) on failure."""
        raw = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **self.webhook_headers(raw)}
        final = self.final_statuses()
        async with loopback_client() as client:
            for attempt in range(1, attempts + 1):
                response = await client.post(url, content=raw, headers=headers)
                done = response.is_success or response.status_code in final
                if done or attempt == attempts:
                    return response
        raise AssertionError("unreachable")

    async def deliver_with_backoff(
        self, client: httpx.AsyncClient, url: str, payload: Any
    ) -> httpx.Response | None:
        """POST a webhook the way a gateway does in production: retry on transport errors and
        retryable statuses with exponential backoff, then give up. None: never got an answer."""
        raw = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **self.webhook_headers(raw)}
        final = self.final_statuses()
        delay = BACKOFF_FIRST_SECS
        response: httpx.Response | None = None
        for _ in range(BACKOFF_ATTEMPTS):
            try:
                response = await client.post(url, content=raw, headers=headers)
            except httpx.TransportError:
                response = None
            else:
                if response.is_success or response.status_code in final:
                    return response
            await asyncio.sleep(delay)  # the gateway's retry delay, not a wait for an outcome
            delay = min(BACKOFF_MAX_SECS, delay * 2)
        return response


def _record(request: Request, raw: bytes) -> RecordedRequest:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return RecordedRequest(
        method=request.method,
        path=request.url.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params),
        json=body,
        body=raw,
    )


async def json_of(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} when there is none)."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def header_is(request: Request, name: str, expected: str) -> bool:
    return request.headers.get(name) == expected


def json_error(status: int, body: Mapping[str, Any]) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status)
