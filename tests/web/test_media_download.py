"""Issue 10 item 1 in a real Chromium: a customer's HTML "invoice.pdf" can not run in the inbox.

The inbox used to open a file as a blob URL, a page of Atende's own origin: the file's script ran
beside the agent's session. Now a file is saved through a `download` link as
application/octet-stream (and the server serves it as an attachment with a sandbox CSP anyway).
The script below would leave a marker in localStorage and call a loopback canary; neither happens.
"""

from __future__ import annotations

import base64
import uuid

import pytest
from playwright.async_api import BrowserContext, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.server import serve_app
from tests.harness import Tenant
from tests.web.conftest import login

RECORD_BLOBS = """
(() => {
  window.__blobTypes = [];
  const original = URL.createObjectURL;
  URL.createObjectURL = (blob) => { window.__blobTypes.push(blob.type); return original(blob); };
})();
"""


def evil_page(canary: str) -> bytes:
    return (
        "<!doctype html><title>Fatura</title><script>"
        "localStorage.setItem('pwned', document.domain);"
        f"new Image().src = '{canary}/ran';"
        f"fetch('{canary}/ran', {{mode: 'no-cors'}});"
        "</script><p>Fatura</p>"
    ).encode()


@pytest.mark.parametrize("claimed", ["text/html", "application/pdf"])
async def test_a_customer_html_file_is_downloaded_not_run(
    page: Page, context: BrowserContext, tenant: Tenant, claimed: str
) -> None:
    hits: list[str] = []

    async def ran(request: Request) -> Response:
        hits.append(request.url.path)
        return Response("ok")

    canary_app = Starlette(routes=[Route("/{path:path}", ran)])
    async with serve_app(canary_app) as canary:
        push_name = f"Fatura{uuid.uuid4().hex[:6]}"
        encoded = base64.b64encode(evil_page(canary)).decode()
        async with tenant.http() as http:
            sent = await http.post(
                "/api/webhooks/sandbox",
                json={
                    "session": tenant.session_name,
                    "from": f"55119{uuid.uuid4().int % 10**8:08d}",
                    "push_name": push_name,
                    "type": "document",
                    "media_url": f"data:{claimed};base64,{encoded}",
                    "mimetype": claimed,
                    "filename": "invoice.pdf",
                    "id": f"doc-{uuid.uuid4().hex}",
                },
                headers={"X-Webhook-Secret": tenant.webhook_secret},
            )
            assert sent.status_code == 200, sent.text

        opened: list[str] = []
        context.on("page", lambda new: opened.append(new.url))
        await page.add_init_script(RECORD_BLOBS)
        await login(page, tenant.server.base_url, tenant.admin_email)
        await page.get_by_test_id("conversation-item").filter(has_text=push_name).click()
        link = page.get_by_test_id("message-file")
        await expect(link).to_have_text("invoice.pdf")
        async with page.expect_download() as download_info:
            await link.click()
        download = await download_info.value
        assert download.suggested_filename == "invoice.pdf"
        saved = await download.path()
        assert saved.read_bytes() == evil_page(canary)  # the file itself, untouched
        blob_types = await page.evaluate("window.__blobTypes")
        assert blob_types == ["application/octet-stream"]
        assert await page.evaluate("localStorage.getItem('pwned')") is None
        assert opened == []  # no page was opened for it
        # The canary is loopback and answers at once; a script that ran would have called it
        # before the download event. One more round trip to be sure nothing is in flight.
        await page.evaluate("fetch('/health')")
    assert hits == []
