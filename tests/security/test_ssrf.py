"""Issue 10 item 2: Atende can not be made to fetch an internal URL and hand back the answer.

Every gateway call and media fetch leaves through `atende.netguard`: internal addresses are
refused unless ATENDE_GATEWAY_ALLOWED_NETWORKS lists them, the connection goes to the address
that was checked, redirects are not followed, media comes only from the session's own gateway,
a gateway's error body never reaches a client, and a media file streams through a size cap.

A "canary" is a real loopback HTTP server that must NOT be reached: the tests that need it
unreachable run a server whose allowed networks are empty, so loopback is refused like any other
internal address.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from atende import netguard
from atende.providers.base import GatewayAddressRefused, GatewayRejected
from atende.providers.http import call
from atende.services import sessions as sessions_svc
from atende.types import ProviderName
from tests.fakes.server import serve_app
from tests.harness import WAIT_SECS, Server, Tenant, make_tenant, run_server, settings_for

SECRET_PAGE = "INTERNAL-ADMIN-PAGE-7f3a"  # what an internal service would answer
MiB = 1024 * 1024


@dataclass
class Canary:
    """A loopback HTTP server that records every request it gets."""

    base_url: str = ""
    hits: list[str] = field(default_factory=list)


@asynccontextmanager
async def canary() -> AsyncIterator[Canary]:
    seen = Canary()

    async def anything(request: Request) -> Response:
        seen.hits.append(f"{request.method} {request.url.path}")
        return JSONResponse({"secret": SECRET_PAGE, "status": "connected", "id": "x"})

    app = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST", "DELETE"])])
    async with serve_app(app) as base_url:
        seen.base_url = base_url
        yield seen


def guarded(allowed: Iterable[str] = ()) -> httpx.AsyncClient:
    settings = settings_for("sqlite+aiosqlite://", gateway_allowed_networks=list(allowed))
    return netguard.client(settings)


# --- the address rule ------------------------------------------------------------------------

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]  # classified only, never dialled


@pytest.mark.parametrize("address", REFUSED)
def test_internal_addresses_are_refused(address: str) -> None:
    import ipaddress

    assert not netguard.permitted(ipaddress.ip_address(address), ())


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_permitted(address: str) -> None:
    import ipaddress

    assert netguard.permitted(ipaddress.ip_address(address), ())


def test_operator_networks_open_internal_ranges() -> None:
    import ipaddress

    allowed = (ipaddress.ip_network("10.0.0.0/8"),)
    assert netguard.permitted(ipaddress.ip_address("10.9.9.9"), allowed)
    assert not netguard.permitted(ipaddress.ip_address("192.168.0.1"), allowed)
    # The IPv4-mapped form of an allowed IPv4 address stays refused: it is not what was listed.
    assert not netguard.permitted(ipaddress.ip_address("::ffff:10.9.9.9"), allowed)


# --- the guard on real sockets ----------------------------------------------------------------


async def test_loopback_is_not_reached_unless_allowed() -> None:
    async with canary() as target, guarded() as client:
        for url in (
            f"{target.base_url}/admin",
            target.base_url.replace("127.0.0.1", "localhost") + "/admin",  # a name, resolved
            target.base_url.replace("127.0.0.1", "[::ffff:127.0.0.1]") + "/admin",  # mapped
            target.base_url.replace("127.0.0.1", "0.0.0.0") + "/admin",
        ):
            with pytest.raises(GatewayAddressRefused):
                await call(client, "GET", url, headers={}, timeout_secs=WAIT_SECS)
        assert target.hits == []
    async with canary() as target, guarded(["127.0.0.0/8"]) as client:
        await call(client, "GET", f"{target.base_url}/ok", headers={}, timeout_secs=WAIT_SECS)
        assert target.hits == ["GET /ok"]  # the operator's list opens it


async def test_mapped_address_refused_even_with_loopback_allowed() -> None:
    async with canary() as target, guarded(["127.0.0.0/8", "::1/128"]) as client:
        url = target.base_url.replace("127.0.0.1", "[::ffff:127.0.0.1]")
        with pytest.raises(GatewayAddressRefused):
            await call(client, "GET", url, headers={}, timeout_secs=WAIT_SECS)
        assert target.hits == []


async def test_other_schemes_are_refused() -> None:
    async with guarded(["127.0.0.0/8"]) as client:
        for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:6379/_x"):
            with pytest.raises(GatewayRejected):
                await call(client, "GET", url, headers={}, timeout_secs=WAIT_SECS)


class _Recording(httpcore.AsyncNetworkBackend):
    """The real backend, noting which host it was asked to dial."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.dialled: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.dialled.append(host)
        return await self.inner.connect_tcp(host, port, *args, **kwargs)

    async def connect_unix_socket(self, path: str, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not used")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


async def test_the_checked_address_is_the_one_dialled() -> None:
    """No DNS-rebinding window: the name is resolved once, by the guard, and the connection is
    made to that address; the Host header still names the host."""
    import ipaddress

    seen_host: list[str] = []

    async def echo(request: Request) -> Response:
        seen_host.append(request.headers["host"])
        return JSONResponse({})

    recording = _Recording()
    backend = netguard.GuardedBackend([ipaddress.ip_network("127.0.0.0/8")], recording)
    app = Starlette(routes=[Route("/", echo)])
    async with serve_app(app) as base_url:
        port = httpx.URL(base_url).port
        pool = httpcore.AsyncConnectionPool(network_backend=backend)
        async with pool:
            answer = await pool.request("GET", f"http://localhost:{port}/")
    assert answer.status == 200
    assert recording.dialled == ["127.0.0.1"]  # an address, not the name (::1 is not allowed)
    assert seen_host == [f"localhost:{port}"]


async def test_redirects_are_not_followed() -> None:
    async with canary() as target:

        async def bounce(request: Request) -> Response:
            return RedirectResponse(f"{target.base_url}/latest/meta-data", status_code=302)

        app = Starlette(routes=[Route("/{path:path}", bounce, methods=["GET", "POST"])])
        async with serve_app(app) as gateway, guarded(["127.0.0.0/8"]) as client:
            with pytest.raises(GatewayRejected, match="redirect"):
                await call(client, "GET", f"{gateway}/x", headers={}, timeout_secs=WAIT_SECS)
        assert target.hits == []


# --- through a running Atende ------------------------------------------------------------------


@asynccontextmanager
async def atende(database_url: str, **overrides: Any) -> AsyncIterator[Server]:
    async with run_server(settings_for(database_url, **overrides)) as running:
        yield running


async def gateway_session(tenant: Tenant, base_url: str) -> tuple[uuid.UUID, str, str]:
    """A connection-service session of `tenant` at `base_url`: (id, name, webhook secret)."""
    name, secret = f"svc-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    row = await sessions_svc.create_session(
        tenant.server.ctx,
        tenant_id=tenant.id,
        provider=ProviderName.CONNECTION_SERVICE,
        name=name,
        base_url=base_url,
        api_key="svc-key",
        webhook_secret=secret,
    )
    return row.id, name, secret


async def customer_sends_file(
    tenant: Tenant, name: str, secret: str, url: str, mimetype: str = "image/jpeg"
) -> str:
    """A connection-service webhook with a media message; the stored message's id."""
    body = {
        "event": "message",
        "session": name,
        "message": {
            "id": f"m-{uuid.uuid4().hex}",
            "from": "5511987654321@s.whatsapp.net",
            "type": "document",
            "media": {"url": url, "mimetype": mimetype, "filename": "f.bin"},
        },
    }
    async with tenant.http() as http:
        answer = await http.post(
            "/api/webhooks/connection_service",
            content=json.dumps(body),
            headers={"X-API-KEY": secret, "Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        listed = await http.get("/api/v1/conversations", headers=tenant.auth())
        conv = next(c for c in listed.json() if c["contact"]["phone_number"].endswith("87654321"))
        messages = await http.get(
            f"/api/v1/conversations/{conv['id']}/messages", headers=tenant.auth()
        )
    return str(next(m["id"] for m in messages.json() if m["message_type"] == "document"))


async def test_session_at_loopback_is_not_reached(database_url: str) -> None:
    async with canary() as target, atende(database_url, gateway_allowed_networks=[]) as server:
        tenant = await make_tenant(server)
        session_id, _, _ = await gateway_session(tenant, target.base_url)
        async with tenant.http() as http:
            answer = await http.post(
                f"/api/v1/whatsapp/sessions/{session_id}/connect", headers=tenant.auth()
            )
    assert answer.status_code == 502, answer.text
    assert answer.json()["error_code"] == "GATEWAY_ADDRESS_NOT_ALLOWED"
    assert target.hits == []


@pytest.mark.parametrize("trick", ["?", "#", "/x?y=", "\\@other"])
async def test_base_url_cannot_pick_the_path(tenant: Tenant, trick: str) -> None:
    async with tenant.http() as http:
        answer = await http.post(
            "/api/v1/whatsapp/sessions",
            json={
                "provider": "connection_service",
                "name": f"trick-{uuid.uuid4().hex[:8]}",
                "base_url": f"http://127.0.0.1:9/internal{trick}",
                "api_key": "k",
            },
            headers=tenant.auth(),
        )
        listed = await http.get("/api/v1/whatsapp/sessions", headers=tenant.auth())
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_BASE_URL"
    assert all("internal" not in (s["base_url"] or "") for s in listed.json())


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("options.graph_url", {"options": {"graph_url": "http://127.0.0.1:9/x?"}}),
        ("options.api_version", {"options": {"api_version": "v1/../../admin"}}),
        ("name", {"name": "x/../../admin?"}),
    ],
)
async def test_nothing_else_picks_a_gateway_path(
    tenant: Tenant, field: str, body: dict[str, Any]
) -> None:
    session = {
        "provider": "cloud",
        "name": f"1{uuid.uuid4().int % 10**12}",
        "api_key": "EAAG",
        "webhook_secret": "app-secret",
        **body,
    }
    async with tenant.http() as http:
        answer = await http.post("/api/v1/whatsapp/sessions", json=session, headers=tenant.auth())
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"]["field"] == field


async def test_media_from_a_foreign_host_is_refused(tenant: Tenant) -> None:
    """The gateway is on loopback (allowed, as for a gateway on the same host); the webhook
    names a URL on another origin, also loopback: refused because it is not the gateway."""
    async with canary() as gateway, canary() as foreign:
        _, name, secret = await gateway_session(tenant, gateway.base_url)
        message_id = await customer_sends_file(
            tenant, name, secret, f"{foreign.base_url}/latest/meta-data"
        )
        async with tenant.http() as http:
            answer = await http.get(f"/api/v1/media/{message_id}", headers=tenant.auth())
    assert answer.status_code == 502, answer.text
    assert answer.json()["error_code"] == "GATEWAY_ADDRESS_NOT_ALLOWED"
    assert SECRET_PAGE not in answer.text
    assert foreign.hits == []


async def test_sandbox_media_url_is_not_fetched(tenant: Tenant) -> None:
    async with canary() as target, tenant.http() as http:
        sent = await http.post(
            "/api/webhooks/sandbox",
            json={
                "session": tenant.session_name,
                "from": "5511911112222",
                "type": "image",
                "media_url": f"{target.base_url}/secret.png",
                "id": f"img-{uuid.uuid4().hex}",
            },
            headers={"X-Webhook-Secret": tenant.webhook_secret},
        )
        assert sent.status_code == 200, sent.text
        conv = await tenant.conversation_where(
            lambda c: c["contact"]["phone_number"].endswith("11112222")
        )
        messages = await http.get(
            f"/api/v1/conversations/{conv['id']}/messages", headers=tenant.auth()
        )
        image = next(m for m in messages.json() if m["message_type"] == "image")
        answer = await http.get(image["content"]["media_url"], headers=tenant.auth())
    assert answer.status_code == 502 and SECRET_PAGE not in answer.text
    assert target.hits == []


async def test_redirecting_media_is_not_followed(tenant: Tenant) -> None:
    async with canary() as target:

        async def bounce(request: Request) -> Response:
            return RedirectResponse(f"{target.base_url}/internal", status_code=302)

        app = Starlette(routes=[Route("/{path:path}", bounce, methods=["GET", "POST"])])
        async with serve_app(app) as gateway:
            _, name, secret = await gateway_session(tenant, gateway)
            message_id = await customer_sends_file(tenant, name, secret, f"{gateway}/files/1")
            async with tenant.http() as http:
                answer = await http.get(f"/api/v1/media/{message_id}", headers=tenant.auth())
    assert answer.status_code == 502, answer.text
    assert "location" not in answer.headers
    assert target.hits == []


async def test_gateway_error_bodies_are_not_reflected(tenant: Tenant) -> None:
    async def refuse(request: Request) -> Response:
        return JSONResponse({"message": SECRET_PAGE, "error": SECRET_PAGE}, status_code=400)

    app = Starlette(routes=[Route("/{path:path}", refuse, methods=["GET", "POST", "DELETE"])])
    async with serve_app(app) as gateway:
        session_id, name, secret = await gateway_session(tenant, gateway)
        message_id = await customer_sends_file(tenant, name, secret, f"{gateway}/files/1")
        async with tenant.http() as http:
            connect = await http.post(
                f"/api/v1/whatsapp/sessions/{session_id}/connect", headers=tenant.auth()
            )
            media = await http.get(f"/api/v1/media/{message_id}", headers=tenant.auth())
            sessions = await http.get("/api/v1/whatsapp/sessions", headers=tenant.auth())
    assert connect.status_code == 502 and connect.json()["error_code"] == "GATEWAY_ERROR"
    assert media.status_code == 502 and media.json()["error_code"] == "GATEWAY_ERROR"
    for answer in (connect, media, sessions):
        assert SECRET_PAGE not in answer.text


# --- media size cap ----------------------------------------------------------------------------

CHUNK = b"\0" * (256 * 1024)


def _huge_gateway(total: int, *, declare: bool) -> Starlette:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(total // len(CHUNK)):
            yield CHUNK

    async def files(request: Request) -> Response:
        headers = {"content-length": str(total)} if declare else {}
        return StreamingResponse(body(), media_type="video/mp4", headers=headers)

    return Starlette(routes=[Route("/files/{name}", files)])


async def test_declared_oversize_media_is_refused_up_front(database_url: str) -> None:
    async with (
        atende(database_url, media_max_bytes=4 * MiB) as server,
        serve_app(_huge_gateway(400 * MiB, declare=True)) as gateway,
    ):
        tenant = await make_tenant(server)
        _, name, secret = await gateway_session(tenant, gateway)
        message_id = await customer_sends_file(tenant, name, secret, f"{gateway}/files/big.mp4")
        async with tenant.http() as http:
            answer = await http.get(f"/api/v1/media/{message_id}", headers=tenant.auth())
    assert answer.status_code == 413, answer.text
    assert answer.json()["error_code"] == "MEDIA_TOO_LARGE"


async def test_undeclared_oversize_media_is_aborted_without_buffering(database_url: str) -> None:
    """A 400 MB chunked answer: Atende streams it, stops at the cap, and never holds more
    than a few chunks (the server runs in this process, so tracemalloc sees its allocations)."""
    cap = 8 * MiB
    async with (
        atende(database_url, media_max_bytes=cap) as server,
        serve_app(_huge_gateway(400 * MiB, declare=False)) as gateway,
    ):
        tenant = await make_tenant(server)
        _, name, secret = await gateway_session(tenant, gateway)
        message_id = await customer_sends_file(tenant, name, secret, f"{gateway}/files/big.mp4")
        received = 0
        tracemalloc.start()
        try:
            async with tenant.http() as http:
                with pytest.raises(httpx.HTTPError):  # the connection is dropped past the cap
                    async with http.stream(
                        "GET", f"/api/v1/media/{message_id}", headers=tenant.auth()
                    ) as answer:
                        assert answer.status_code == 200
                        async for chunk in answer.aiter_raw():
                            received += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert received <= cap
    assert peak < cap // 2, f"peak {peak} bytes while streaming"


async def test_media_within_the_cap_streams_whole(tenant: Tenant) -> None:
    total = 3 * MiB
    async with serve_app(_huge_gateway(total, declare=False)) as gateway:
        _, name, secret = await gateway_session(tenant, gateway)
        message_id = await customer_sends_file(
            tenant, name, secret, f"{gateway}/files/v.mp4", "video/mp4"
        )
        async with tenant.http() as http:
            answer = await http.get(f"/api/v1/media/{message_id}", headers=tenant.auth())
    assert answer.status_code == 200
    assert len(answer.content) == total
    assert answer.headers["content-type"] == "video/mp4"  # on the inline list: served as itself


async def test_slow_media_is_cut_off(database_url: str) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b"x"
            await asyncio.sleep(0.05)  # the fake gateway's pace: 20 bytes/s

    async def files(request: Request) -> Response:
        return StreamingResponse(trickle(), media_type="image/png")

    app = Starlette(routes=[Route("/files/{name}", files)])
    async with (
        atende(database_url, media_fetch_timeout_secs=0.5) as server,
        serve_app(app) as gateway,
    ):
        tenant = await make_tenant(server)
        _, name, secret = await gateway_session(tenant, gateway)
        message_id = await customer_sends_file(tenant, name, secret, f"{gateway}/files/s.png")
        async with tenant.http() as http:
            async with asyncio.timeout(WAIT_SECS):
                with pytest.raises(httpx.HTTPError):
                    await http.get(f"/api/v1/media/{message_id}", headers=tenant.auth())


async def test_the_app_sends_through_the_guard(server: Server) -> None:
    """Every provider gets AppContext.http: netguard's client, which follows no redirect."""
    assert isinstance(server.ctx.http._transport, netguard.GuardedTransport)
    assert server.ctx.http.follow_redirects is False
