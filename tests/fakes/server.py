"""Run Starlette apps on real loopback HTTP inside the test's event loop, and the base of every
fake gateway: request recording, auth check, programmable failures, webhook delivery."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
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


@dataclass
class _Failure:
    status: int
    body: Any


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
            raw = await request.body()
            record = _record(request, raw)
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
            response: Response = await endpoint(request)
            if self.on_answer is not None:
                await self.on_answer(record, response)
            return response

        return handler

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
