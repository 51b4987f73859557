"""Test harness: a real Atende (uvicorn on a loopback port) per database, and tenants to use it.

Tests wait on events with timeouts; nothing here sleeps to let things happen.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from atende.app import create_app
from atende.config import Settings
from atende.context import AppContext
from atende.services import accounts
from atende.services import sessions as sessions_svc
from atende.services.auth import mint_token
from atende.serving import server_config
from atende.types import ProviderName, Role

TEST_JWT_SECRET = "test-secret-0123456789abcdef-atende"
TEST_SECRET_KEY = "test-master-key-fedcba9876543210-atende"
# Fake gateways listen on loopback; outside tests that is refused unless the operator allows it.
TEST_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
# The same settings for `atende` processes the tests start (CLI, serve, chaos, two instances).
TEST_ENV = {
    "ATENDE_ENVIRONMENT": "test",
    "ATENDE_JWT_SECRET": TEST_JWT_SECRET,
    "ATENDE_SECRET_KEY": TEST_SECRET_KEY,
    "ATENDE_SANDBOX_ENABLED": "true",
    "ATENDE_LOGIN_FAILURES_PER_IP": "100000",
    "ATENDE_GATEWAY_ALLOWED_NETWORKS": ",".join(TEST_ALLOWED_NETWORKS),
}
WAIT_SECS = 10.0


async def serve_until_healthy(
    env: dict[str, str], port: int, wait_secs: float = 30.0
) -> tuple[str, asyncio.subprocess.Process]:
    """`atende serve` in a subprocess, up to its answering /health; what it printed by then."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "atende", "serve", "--port", str(port)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = ""
    async with asyncio.timeout(wait_secs):
        while "Atende listening" not in output:
            line = (await proc.stdout.readline()).decode()
            assert line, f"serve exited early:\n{output}"
            output += line
        async with httpx.AsyncClient() as http:
            while True:  # the banner comes just before uvicorn binds: poll /health
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
    return output, proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "jwt_secret": TEST_JWT_SECRET,
        "secret_key": TEST_SECRET_KEY,
        "sandbox_enabled": True,
        "gateway_allowed_networks": TEST_ALLOWED_NETWORKS,
        "sandbox_delivered_after_ms": 20,
        "sandbox_read_after_ms": 40,
        "outbox_backoff_base_secs": 0.05,
        "outbox_backoff_max_secs": 0.2,
        "gateway_timeout_secs": 2.0,
        "allowed_origins": ["http://inbox.example"],
        "create_demo": False,
        # The whole suite logs in from 127.0.0.1 against session-long servers; the per-address
        # limit has its own test on a server of its own (tests/security/test_auth_security.py).
        "login_failures_per_ip": 100_000,
        "rate_limit_per_minute": 10_000,
        "rate_limit_per_hour": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Server:
    settings: Settings
    base_url: str
    ws_base: str
    app: Any

    @property
    def ctx(self) -> AppContext:
        ctx: AppContext = self.app.state.ctx
        return ctx


@asynccontextmanager
async def run_server(settings: Settings, port: int | None = None) -> AsyncIterator[Server]:
    app = create_app(settings)
    port = port or free_port()
    config = server_config(
        app, settings, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT_SECS):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)  # polling uvicorn's own start flag, not waiting blind
        yield Server(settings, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=WAIT_SECS)


@dataclass
class Tenant:
    server: Server
    id: uuid.UUID
    admin_id: uuid.UUID
    agent_id: uuid.UUID
    admin_token: str
    agent_token: str
    session_name: str
    session_id: uuid.UUID
    webhook_secret: str
    admin_email: str
    password: str = "correct-horse-battery"

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base_url, timeout=WAIT_SECS)

    async def conversation_where(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first conversation of the admin's list that `match` accepts."""
        async with self.http() as client:
            listed = (await client.get("/api/v1/conversations", headers=self.auth())).json()
        return next(c for c in listed if match(c))

    async def assign(self, conversation_id: str, user_id: uuid.UUID) -> dict[str, Any]:
        """Assign a conversation through REST as the admin; the test fails if it is refused."""
        async with self.http() as client:
            response = await client.post(
                f"/api/v1/conversations/{conversation_id}/assign",
                json={"user_id": str(user_id)},
                headers=self.auth(),
            )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def customer_says(
        self,
        text: str,
        *,
        phone: str = "5511987654321",
        msg_id: str | None = None,
        push_name: str = "Maria",
    ) -> httpx.Response:
        async with self.http() as client:
            return await client.post(
                "/api/webhooks/sandbox",
                json={
                    "session": self.session_name,
                    "from": phone,
                    "text": text,
                    "push_name": push_name,
                    "id": msg_id or f"in-{uuid.uuid4().hex}",
                },
                headers={"X-Webhook-Secret": self.webhook_secret},
            )

    @asynccontextmanager
    async def chat_socket(
        self, token: str | None = None, *, last_event_id: int | None = None, greet: bool = True
    ) -> AsyncIterator[WsClient]:
        url = f"{self.server.ws_base}/ws/chat?tenant_id={self.id}&token={token or self.admin_token}"
        if last_event_id is not None:
            url += f"&last_event_id={last_event_id}"
        async with connect(url) as ws:
            client = WsClient(ws)
            if greet:
                await client.expect("connected")
            yield client


async def make_tenant(server: Server, name: str = "Clinic") -> Tenant:
    ctx = server.ctx
    suffix = uuid.uuid4().hex[:10]
    tenant = await accounts.create_tenant(ctx, name=f"{name} {suffix}")
    password = "correct-horse-battery"
    admin = await accounts.create_user(
        ctx, tenant_id=tenant.id, email=f"admin-{suffix}@t.test", password=password, role=Role.ADMIN
    )
    agent = await accounts.create_user(
        ctx, tenant_id=tenant.id, email=f"agent-{suffix}@t.test", password=password, role=Role.AGENT
    )
    secret = uuid.uuid4().hex
    session = await sessions_svc.create_session(
        ctx,
        tenant_id=tenant.id,
        provider=ProviderName.SANDBOX,
        name=f"sbx-{suffix}",
        webhook_secret=secret,
    )

    def token(user_id: uuid.UUID, role: Role) -> str:
        return mint_token(ctx.settings, user_id=user_id, tenant_id=tenant.id, role=role.value)

    return Tenant(
        server=server,
        id=tenant.id,
        admin_id=admin.id,
        agent_id=agent.id,
        admin_token=token(admin.id, Role.ADMIN),
        agent_token=token(agent.id, Role.AGENT),
        session_name=session.name,
        session_id=session.id,
        webhook_secret=secret,
        admin_email=admin.email,
    )


class WsClient:
    """A real WebSocket client that waits for frames by type, keeping what it skipped."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    async def next(self, timeout: float = WAIT_SECS) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout=timeout)
        frame: dict[str, Any] = orjson.loads(raw)
        self.seen.append(frame)
        return frame

    async def expect(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = WAIT_SECS,
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout)
                if frame.get("type") == kind and (where is None or where(frame)):
                    return frame

    async def collect(
        self, count: int, kind: str, timeout: float = WAIT_SECS
    ) -> list[dict[str, Any]]:
        found = []
        async with asyncio.timeout(timeout):
            while len(found) < count:
                frame = await self.next(timeout)
                if frame.get("type") == kind:
                    found.append(frame)
        return found
