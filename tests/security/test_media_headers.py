"""Issue 10 items 1 and 14: a customer's file is served so that it can not run as a page of
Atende's origin, and any file name downloads.

The webhook claims the type and the name. Only a short list of image/audio/video types is served
as itself, inline; anything else (HTML, SVG, PDF, made-up types) is application/octet-stream and
an attachment. Every media answer has `nosniff` and `Content-Security-Policy: sandbox`. Names
with quotes, CR/LF or non-Latin-1 characters get RFC 6266's `filename*` and a clean ASCII
fallback. A stored URL is never answered with a redirect.
"""

from __future__ import annotations

import base64
import uuid
from urllib.parse import unquote

import pytest

from atende.api.media import content_disposition
from tests.harness import Tenant

HTML = b"<html><script>fetch('/steal?t='+localStorage.getItem('x'))</script></html>"


async def customer_sends(
    tenant: Tenant, data: bytes, mimetype: str, filename: str | None, kind: str = "document"
) -> str:
    """The customer sends a file through the sandbox; the media URL of the stored message."""
    phone = f"55119{uuid.uuid4().int % 10**8:08d}"
    encoded = base64.b64encode(data).decode()
    async with tenant.http() as http:
        sent = await http.post(
            "/api/webhooks/sandbox",
            json={
                "session": tenant.session_name,
                "from": phone,
                "type": kind,
                "media_url": f"data:{mimetype};base64,{encoded}",
                "mimetype": mimetype,
                "filename": filename,
                "id": f"file-{uuid.uuid4().hex}",
            },
            headers={"X-Webhook-Secret": tenant.webhook_secret},
        )
        assert sent.status_code == 200, sent.text
        conv = await tenant.conversation_where(lambda c: c["contact"]["phone_number"] == phone)
        messages = await http.get(
            f"/api/v1/conversations/{conv['id']}/messages", headers=tenant.auth()
        )
    return str(
        next(m for m in messages.json() if m["message_type"] == kind)["content"]["media_url"]
    )


@pytest.mark.parametrize(
    "claimed",
    ["text/html", "application/pdf", "image/svg+xml", "application/xhtml+xml", "text/plain"],
)
async def test_active_content_is_an_octet_stream_attachment(tenant: Tenant, claimed: str) -> None:
    url = await customer_sends(tenant, HTML, claimed, "invoice.pdf")
    async with tenant.http() as http:
        answer = await http.get(url, headers=tenant.auth())
    assert answer.status_code == 200, answer.text
    assert answer.content == HTML
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"] == "sandbox"


@pytest.mark.parametrize(
    ("claimed", "served"),
    [
        ("image/png", "image/png"),
        ("image/jpeg", "image/jpeg"),
        ("audio/ogg; codecs=opus", "audio/ogg"),
        ("video/mp4", "video/mp4"),
        ("IMAGE/WEBP", "image/webp"),
    ],
)
async def test_listed_media_is_inline_in_its_own_type(
    tenant: Tenant, claimed: str, served: str
) -> None:
    url = await customer_sends(tenant, b"\x89PNG...", claimed, "foto.png", kind="image")
    async with tenant.http() as http:
        answer = await http.get(url, headers=tenant.auth())
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == served
    assert answer.headers["content-disposition"].startswith("inline;")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"] == "sandbox"


@pytest.mark.parametrize(
    "name",
    [
        "Orçamento – Março 2026.pdf",
        'a"b.pdf',
        "evil\r\nSet-Cookie: x=1.pdf",
        "日本語.docx",
        "back\\slash;.pdf",
        "\x00\x07.pdf",
    ],
)
async def test_any_file_name_downloads(tenant: Tenant, name: str) -> None:
    url = await customer_sends(tenant, b"%PDF-1.4", "application/pdf", name)
    async with tenant.http() as http:
        answer = await http.get(url, headers=tenant.auth())
    assert answer.status_code == 200, answer.text
    disposition = answer.headers["content-disposition"]
    assert "set-cookie" not in {k.lower() for k in answer.headers}
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback and fallback.isascii() and all(" " <= ch <= "~" for ch in fallback)
    assert '"' not in fallback and "\\" not in fallback
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    expected = "".join(ch for ch in name if ch.isprintable()).strip()
    assert unquote(encoded) == expected


def test_disposition_of_a_missing_name() -> None:
    assert content_disposition("application/octet-stream", None) == (
        "attachment; filename=\"media\"; filename*=UTF-8''media"
    )


async def test_a_stored_url_is_never_a_redirect(tenant: Tenant) -> None:
    await tenant.customer_says("oi")
    conv = await tenant.conversation_where(lambda c: True)
    async with tenant.http() as http:
        sent = await http.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={
                "message_type": "image",
                "media_url": "http://169.254.169.254/latest/meta-data",
                "mimetype": "image/png",
            },
            headers=tenant.auth(),
        )
        assert sent.status_code == 200, sent.text
        answer = await http.get(f"/api/v1/media/{sent.json()['id']}", headers=tenant.auth())
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "NOT_FOUND"
    assert "location" not in answer.headers
