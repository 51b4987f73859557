"""Browser tests: Debian's Chromium driven by Playwright against a real Atende.

The web tests run on SQLite only and use a server of their own whose public URL is its real
address, so the browser's Origin (the page's own) is an allowed one for the WebSocket.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from atende.app import create_app
from atende.config import Settings
from atende.db import migrate
from atende.serving import server_config
from tests.harness import WAIT_SECS, Server, Tenant, free_port, settings_for

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery"
UI_WAIT_MS = 10_000

expect.set_options(timeout=UI_WAIT_MS)


def web_settings(database_url: str, port: int) -> Settings:
    # The simulated phone acks at a human pace, as a real one does, so ticks visibly move.
    return settings_for(
        database_url,
        public_url=f"http://127.0.0.1:{port}",
        sandbox_delivered_after_ms=150,
        sandbox_read_after_ms=500,
    )


@asynccontextmanager
async def serve_on(settings: Settings, port: int) -> AsyncIterator[Server]:
    """Like harness.run_server, on a chosen port (a restarted server comes back on the same)."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = server_config(app, settings, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT_SECS):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)  # polling uvicorn's own start flag
        yield Server(settings, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=WAIT_SECS)
        sock.close()


async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('webdb') / 'atende.db'}"
    await migrate.upgrade(url)
    return url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """Overrides the two-backend `server`: one SQLite server for all browser tests."""
    port = free_port()
    async with serve_on(web_settings(await sqlite_url(tmp_path_factory), port), port) as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1440, "height": 900}, locale="pt-BR")
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A fresh page; an uncaught JavaScript error in it fails the test."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert errors == [], f"JavaScript errors in the page: {errors}"


def agent_email(tenant: Tenant) -> str:
    return tenant.admin_email.replace("admin-", "agent-")


async def login(page: Page, base_url: str, email: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base_url}/#/login")
    await page.get_by_test_id("login-email").fill(email)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("page-inbox")).to_be_visible()
    await expect(page.get_by_test_id("connection-indicator")).to_have_attribute(
        "data-state", "online"
    )


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
