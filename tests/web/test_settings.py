"""The WhatsApp settings page: a fake Evolution gateway's QR shown, refreshed, then connected."""

from __future__ import annotations

import base64
import random
import struct
import uuid
import zlib

from playwright.async_api import Page, expect

from atende.services import sessions as sessions_svc
from atende.types import ProviderName
from tests.fakes.evolution import QR_DATA_URL, FakeEvolution
from tests.harness import Tenant
from tests.web.conftest import agent_email, login, screenshot


def qr_like_png(seed: int, modules: int = 25, scale: int = 8) -> str:
    """A QR-looking PNG data URL (finder squares + noise): a fresh 'code' for each seed."""
    rng = random.Random(seed)
    grid = [[rng.random() < 0.45 for _ in range(modules)] for _ in range(modules)]
    for top, left in ((0, 0), (0, modules - 7), (modules - 7, 0)):
        for r in range(7):
            for c in range(7):
                ring = max(abs(r - 3), abs(c - 3))
                grid[top + r][left + c] = ring != 2
    rows = b"".join(
        b"\x00" + bytes(0 if grid[y // scale][x // scale] else 255 for x in range(modules * scale))
        for y in range(modules * scale)
    )
    size = modules * scale

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


async def test_settings_shows_a_live_qr_then_connected(page: Page, tenant: Tenant) -> None:
    secret = uuid.uuid4().hex
    fake = FakeEvolution(webhook_key=secret, instance=f"loja-{uuid.uuid4().hex[:8]}")
    async with fake.running() as gateway_url:
        row = await sessions_svc.create_session(
            tenant.server.ctx,
            tenant_id=tenant.id,
            provider=ProviderName.EVOLUTION,
            name=fake.instance,
            base_url=gateway_url,
            api_key=fake.api_key,
            webhook_secret=secret,
        )
        await login(page, tenant.server.base_url, tenant.admin_email)
        await page.get_by_test_id("nav-settings").click()
        card = page.locator(f"[data-testid=session-card][data-session-id='{row.id}']")
        await expect(card.get_by_test_id("session-name")).to_have_text(fake.instance)
        await expect(card.get_by_test_id("session-state")).to_have_attribute(
            "data-state", "disconnected"
        )
        sandbox = page.get_by_test_id("session-card").filter(has_text=tenant.session_name)
        await expect(sandbox.get_by_test_id("session-state")).to_have_attribute(
            "data-state", "connected"
        )
        for secret_text in (fake.api_key, secret):
            assert secret_text not in await page.content()

        await card.get_by_test_id("session-connect").click()
        qr = card.get_by_test_id("session-qr")
        await expect(qr).to_have_attribute("src", QR_DATA_URL)
        await expect(card.get_by_test_id("session-state")).to_have_attribute("data-state", "qr")

        # The gateway sends a new QR: the page swaps it in without being asked.
        fresh = qr_like_png(seed=7)
        webhook = f"{tenant.server.base_url}/api/webhooks/evolution"
        delivered = await fake.deliver(webhook, fake.qr(fresh))
        assert delivered.status_code == 200, delivered.text
        await expect(qr).to_have_attribute("src", fresh)
        await screenshot(page, "whatsapp-settings-qr")

        # The phone scanned it: the gateway says so and the card flips to connected.
        fake.instances[fake.instance] = "open"
        delivered = await fake.deliver(webhook, fake.connection("open"))
        assert delivered.status_code == 200, delivered.text
        await expect(card.get_by_test_id("session-state")).to_have_attribute(
            "data-state", "connected"
        )
        await expect(qr).to_have_count(0)
        await screenshot(page, "whatsapp-settings")

        await card.get_by_test_id("session-disconnect").click()
        await expect(card.get_by_test_id("session-state")).to_have_attribute(
            "data-state", "disconnected"
        )


async def test_agents_have_no_settings_page(page: Page, tenant: Tenant) -> None:
    await login(page, tenant.server.base_url, agent_email(tenant))
    await expect(page.get_by_test_id("nav-settings")).to_have_count(0)
    await page.goto(f"{tenant.server.base_url}/#/settings")
    await expect(page.get_by_test_id("settings-notice")).to_have_text(
        "Apenas administradores podem gerenciar as conexões."
    )
