"""Issue 10 item 13: security headers on every page and API answer; /docs from local files.

Before, no answer carried a Content-Security-Policy, X-Frame-Options, nosniff or a referrer
policy, and /docs loaded Swagger UI from a CDN (blank offline). The browser half (the inbox and
/docs work under the policy, offline) is in tests/web/test_docs_offline.py.
"""

from __future__ import annotations

import re

import httpx

from atende.security_headers import add_missing
from tests.harness import Tenant

REQUIRED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
CSP_DIRECTIVES = {
    "default-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
}


def assert_secure(answer: httpx.Response) -> None:
    for name, value in REQUIRED.items():
        assert answer.headers.get(name) == value, (answer.request.url, name, answer.headers)
    directives = {d.strip() for d in answer.headers["content-security-policy"].split(";")}
    assert directives >= CSP_DIRECTIVES, (answer.request.url, directives)
    assert not any("unsafe" in d for d in directives)


async def test_every_kind_of_answer_carries_the_headers(tenant: Tenant) -> None:
    async with tenant.http() as http:
        answers = [
            await http.get("/"),
            await http.get("/css/app.css"),
            await http.get("/api/v1/conversations", headers=tenant.auth()),
            await http.get("/api/v1/conversations"),  # 401
            await http.get("/api/v1/no-such-route"),  # 404
            await http.post("/api/v1/auth/login", json={"email": 1}),  # 400
            await http.post("/api/v1/auth/login", content=b"x" * (2 * 1024 * 1024)),  # 413
            await http.get("/docs"),
            await http.get("/openapi.json"),
            await http.get("/health"),
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 401, 404, 400, 413, 200, 200, 200]
    for answer in answers:
        assert_secure(answer)


def test_a_route_that_set_its_own_policy_keeps_it() -> None:
    """Media answers carry `Content-Security-Policy: sandbox`: it must not be replaced."""
    headers = add_missing([(b"content-security-policy", b"sandbox")])
    policies = [value for name, value in headers if name == b"content-security-policy"]
    assert policies == [b"sandbox"]
    assert (b"x-frame-options", b"DENY") in headers


async def test_docs_page_uses_only_local_assets_and_no_inline_script(tenant: Tenant) -> None:
    async with tenant.http() as http:
        page = await http.get("/docs")
        refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert refs, page.text
        for ref in refs:
            assert ref.startswith("/") and not ref.startswith("//"), ref
            asset = await http.get(ref)
            assert asset.status_code == 200, ref
            assert_secure(asset)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, flags=re.S)
    assert scripts
    assert all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert "style=" not in page.text and "<style" not in page.text
