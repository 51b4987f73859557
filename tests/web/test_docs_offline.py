"""/docs renders in a real browser with no network but loopback, under the security policy."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import ConsoleMessage, Page, Request, expect

from tests.harness import Server
from tests.web.conftest import screenshot

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


async def test_docs_render_offline_under_the_policy(page: Page, server: Server) -> None:
    hosts: set[str] = set()
    refused: list[str] = []

    def on_request(request: Request) -> None:
        if request.url.startswith(("http:", "https:", "ws:", "wss:")):
            hosts.add(urlsplit(request.url).hostname or "")

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            refused.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    await page.goto(f"{server.base_url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Atende")
    await expect(page.locator(".opblock-summary-path").first).to_be_visible()
    await screenshot(page, "docs-offline")
    assert hosts <= LOOPBACK, hosts
    assert refused == []


async def test_inbox_login_page_breaks_no_policy_rule(page: Page, server: Server) -> None:
    refused: list[str] = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    await page.goto(server.base_url)
    await expect(page.locator("input[type=password]")).to_be_visible()
    assert refused == []
