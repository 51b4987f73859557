"""Issue 10 item 10: session names are per tenant, and every session has its own webhook URL.

Tenant B used to be able to squat WAHA's only free-edition name `default` (names were global)
and to learn other tenants' session names from 409s and from webhooks answering 404 to any
stranger. Now each tenant names its sessions as it likes; each session has an unguessable
`/api/webhooks/{provider}/{token}` URL (shown to its admins); and a webhook to a name or token
that does not exist answers exactly what a known one with the wrong credentials answers.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from atende.services import sessions as sessions_svc
from tests.fakes.waha import FakeWaha
from tests.harness import Tenant

SESSIONS = "/api/v1/whatsapp/sessions"


async def _create(tenant: Tenant, name: str, provider: str = "waha") -> httpx.Response:
    async with tenant.http() as http:
        return await http.post(
            SESSIONS,
            json={"provider": provider, "name": name, "base_url": "http://127.0.0.1:9"},
            headers=tenant.auth(),
        )


async def _deliver(url: str, name: str, secret: str, text: str, tenant: Tenant) -> httpx.Response:
    """A WAHA customer message for session `name`, signed with `secret`, posted to `url`."""
    fake = FakeWaha(session=name, hmac_key=secret)
    raw = json.dumps(fake.inbound_text("5511987650001", text)).encode()
    headers = {"Content-Type": "application/json", **fake.webhook_headers(raw)}
    async with tenant.http() as http:
        return await http.post(url, content=raw, headers=headers)


async def _texts(tenant: Tenant) -> list[str]:
    async with tenant.http() as http:
        convs = (await http.get("/api/v1/conversations", headers=tenant.auth())).json()
    return [str(c["last_message"]) for c in convs]


async def test_two_tenants_each_have_default_and_get_their_own_webhooks(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    made: list[dict[str, Any]] = []
    for owner in (tenant, other_tenant):
        answer = await _create(owner, "default")
        assert answer.status_code == 201, answer.text  # B too, although A has a `default`
        made.append(answer.json())
    a, b = made
    for session in (a, b):
        assert session["webhook_secret"]  # generated, shown once (issue item 18)
        assert urlsplit(session["webhook_url"]).path.startswith("/api/webhooks/waha/wh_")
    assert a["webhook_url"] != b["webhook_url"]

    for owner, session, text in ((tenant, a, "para A"), (other_tenant, b, "para B")):
        path = urlsplit(session["webhook_url"]).path
        answer = await _deliver(path, "default", session["webhook_secret"], text, owner)
        assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.text
    assert await _texts(tenant) == ["para A"]
    assert await _texts(other_tenant) == ["para B"]

    # The name URL still works where the credentials tell the `default`s apart.
    named = await _deliver("/api/webhooks/waha", "default", b["webhook_secret"], "B 2", tenant)
    assert named.status_code == 200 and named.json()["stored"] == 1, named.text
    assert sorted(await _texts(other_tenant)) == ["B 2"]

    # A's token with B's secret is refused, and stores nothing anywhere.
    a_path = urlsplit(a["webhook_url"]).path
    crossed = await _deliver(a_path, "default", b["webhook_secret"], "cruzado", tenant)
    assert crossed.status_code == 401
    assert await _texts(tenant) == ["para A"]


async def test_b_can_not_learn_a_s_session_names(tenant: Tenant, other_tenant: Tenant) -> None:
    a_name = f"loja-{uuid.uuid4().hex[:8]}"
    first = await _create(tenant, a_name)
    assert first.status_code == 201
    a_token_path = urlsplit(first.json()["webhook_url"]).path
    # Creating the same name is B's own business: no 409 telling B that someone has it.
    mine = await _create(other_tenant, a_name)
    assert mine.status_code == 201, mine.text
    assert first.json()["id"] not in mine.text

    b_secret = mine.json()["webhook_secret"]
    nobody = f"loja-{uuid.uuid4().hex[:8]}"
    # A stranger (B's secret is as good as none for A's session) probing names and tokens:
    probes = {
        "A's name": ("/api/webhooks/waha", a_name, "wrong-secret"),
        "no such name": ("/api/webhooks/waha", nobody, "wrong-secret"),
        "A's token": (a_token_path, a_name, "wrong-secret"),
        "no such token": (f"/api/webhooks/waha/wh_{uuid.uuid4().hex}", a_name, "wrong-secret"),
    }
    answers = {
        what: await _deliver(url, name, secret, "sonda", other_tenant)
        for what, (url, name, secret) in probes.items()
    }
    bodies = {(a.status_code, a.content) for a in answers.values()}
    assert len(bodies) == 1, {k: v.text for k, v in answers.items()}  # all the same answer
    [(status, body)] = bodies
    assert status == 401 and json.loads(body)["error_code"] == "UNAUTHORIZED"
    assert a_name.encode() not in body

    # With its own secret B reaches its own session by name, never A's.
    own = await _deliver("/api/webhooks/waha", a_name, b_secret, "do B", other_tenant)
    assert own.status_code == 200 and own.json()["stored"] == 1
    assert await _texts(tenant) == []


async def test_only_admins_see_webhook_urls(tenant: Tenant) -> None:
    async with tenant.http() as http:
        listed = await http.get(SESSIONS, headers=tenant.auth())
        as_agent = await http.get(SESSIONS, headers=tenant.auth(tenant.agent_token))
        status = await http.get(
            f"/api/whatsapp/status/{tenant.id}", headers=tenant.auth(tenant.agent_token)
        )
    [session] = listed.json()
    assert "/api/webhooks/sandbox/wh_" in session["webhook_url"]
    assert as_agent.status_code == 403
    assert status.status_code == 200, status.text
    assert "webhook_url" not in status.text and "/wh_" not in status.text


async def test_meta_handshake_on_a_session_s_own_url(tenant: Tenant, other_tenant: Tenant) -> None:
    """Meta checks the callback URL itself: a Cloud session's own URL answers the handshake
    with that session's verify token only."""
    made = {}
    for owner, verify in ((tenant, "vt-da-loja-a"), (other_tenant, "vt-da-loja-b")):
        async with owner.http() as http:
            answer = await http.post(
                SESSIONS,
                json={
                    "provider": "cloud",
                    "name": str(uuid.uuid4().int)[:15],
                    "webhook_secret": "app-secret",
                    "options": {"verify_token": verify},
                },
                headers=owner.auth(),
            )
        assert answer.status_code == 201, answer.text
        made[verify] = urlsplit(answer.json()["webhook_url"]).path
    a_path, b_path = made["vt-da-loja-a"], made["vt-da-loja-b"]
    hello = {"hub.mode": "subscribe", "hub.challenge": "4242"}
    async with tenant.http() as http:
        ok = await http.get(a_path, params={**hello, "hub.verify_token": "vt-da-loja-a"})
        crossed = await http.get(b_path, params={**hello, "hub.verify_token": "vt-da-loja-a"})
    assert ok.status_code == 200 and ok.text == "4242"
    assert crossed.status_code == 401 and "4242" not in crossed.text


async def test_made_up_names_do_not_pile_up(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown names are cached like known ones (so timing does not tell them apart), within
    a bound: a stranger's flood of made-up names can not grow memory."""
    monkeypatch.setattr(sessions_svc, "SESSION_CACHE_MAX", 20)
    cache = tenant.server.ctx.session_cache
    for _ in range(60):
        answer = await _deliver(
            "/api/webhooks/waha", f"x-{uuid.uuid4().hex}", "s", "inundação", tenant
        )
        assert answer.status_code == 401
        assert len(cache) <= 20
