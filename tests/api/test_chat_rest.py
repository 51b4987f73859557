"""Seed 000 REST routes, auth, errors and tenant isolation, against a real server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from atende.services import sessions as sessions_svc
from atende.types import SessionState
from tests.harness import Server, Tenant, make_tenant, run_server, settings_for

PHONE = "5511987654321"


async def test_login_refresh_and_me(tenant: Tenant) -> None:
    async with tenant.http() as http:
        bad = await http.post(
            "/api/v1/auth/login", json={"email": tenant.admin_email, "password": "wrong-password"}
        )
        assert bad.status_code == 401 and bad.json()["error_code"] == "UNAUTHORIZED"
        ok = await http.post(
            "/api/v1/auth/login", json={"email": tenant.admin_email, "password": tenant.password}
        )
        assert ok.status_code == 200
        body = ok.json()
        me = await http.get("/api/v1/auth/me", headers=tenant.auth(body["access_token"]))
        assert me.json()["email"] == tenant.admin_email and me.json()["role"] == "admin"
        renewed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
        assert renewed.status_code == 200 and renewed.json()["access_token"]
        wrong_kind = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["access_token"]}
        )
        assert wrong_kind.status_code == 401


async def test_jwt_carries_the_seed_claims(tenant: Tenant) -> None:
    import jwt

    claims = jwt.decode(tenant.admin_token, options={"verify_signature": False})
    assert claims["sub"] == str(tenant.admin_id)
    assert claims["tenant_id"] == claims["organization_id"] == str(tenant.id)
    assert claims["role"] == "admin" and claims["exp"] > claims["iat"]


async def test_conversations_and_paged_messages_oldest_first(tenant: Tenant) -> None:
    for i in range(7):
        assert (await tenant.customer_says(f"m{i}")).status_code == 200
    async with tenant.http() as http:
        listed = await http.get(
            f"/api/tenants/{tenant.id}/chat/conversations", headers=tenant.auth()
        )
        conv = listed.json()["conversations"][0]
        assert conv["phone_number"] == PHONE and conv["unread_count"] == 7
        assert conv["last_message"] == "m6" and conv["name"] == "Maria"
        url = f"/api/tenants/{tenant.id}/chat/conversations/{PHONE}/messages"
        first = (await http.get(url, params={"limit": 3, "page": 1}, headers=tenant.auth())).json()
        last = (await http.get(url, params={"limit": 3, "page": 3}, headers=tenant.auth())).json()
        too_many = await http.get(url, params={"limit": 101}, headers=tenant.auth())
    assert [m["text"] for m in first["messages"]] == ["m4", "m5", "m6"]
    assert [m["text"] for m in last["messages"]] == ["m0"]
    assert (first["total"], first["page"], first["pages"]) == (7, 1, 3)
    assert first["messages"][0]["from_me"] is False and first["messages"][0]["from"] == PHONE
    assert too_many.status_code == 400 and too_many.json()["error_code"] == "INVALID_INPUT"


async def test_send_validates_and_neutralises_html(tenant: Tenant) -> None:
    url = f"/api/tenants/{tenant.id}/chat/send"
    async with tenant.http() as http:
        long = await http.post(
            url, json={"phone_number": PHONE, "text": "x" * 4097}, headers=tenant.auth()
        )
        bad_phone = await http.post(
            url, json={"phone_number": "123", "text": "oi"}, headers=tenant.auth()
        )
        missing = await http.post(url, json={"phone_number": PHONE}, headers=tenant.auth())
        ok = await http.post(
            url,
            json={"phone_number": PHONE, "text": "<script>alert(1)</script><b>Olá</b> & até"},
            headers=tenant.auth(),
        )
        page = await http.get(
            f"/api/tenants/{tenant.id}/chat/conversations/{PHONE}/messages", headers=tenant.auth()
        )
    assert long.status_code == 400 and long.json()["error_code"] == "MESSAGE_TOO_LONG"
    assert bad_phone.status_code == 400 and bad_phone.json()["error_code"] == "INVALID_PHONE_NUMBER"
    assert missing.status_code == 400
    assert ok.status_code == 200 and ok.json()["success"] is True
    texts = [m["text"] for m in page.json()["messages"]]
    assert texts == ["Olá & até"]  # only the valid send was stored, with its HTML removed


async def test_unauthenticated_and_cross_tenant_requests_are_refused(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    paths = [
        ("GET", f"/api/tenants/{tenant.id}/chat/conversations", None),
        ("GET", f"/api/tenants/{tenant.id}/chat/conversations/{PHONE}/messages", None),
        ("POST", f"/api/tenants/{tenant.id}/chat/send", {"phone_number": PHONE, "text": "oi"}),
    ]
    async with tenant.http() as http:
        for method, path, body in paths:
            anonymous = await http.request(method, path, json=body)
            assert anonymous.status_code == 401, path
            assert anonymous.json()["error_code"] == "UNAUTHORIZED"
            foreign = await http.request(method, path, json=body, headers=other_tenant.auth())
            assert foreign.status_code == 403, path
            forged = await http.request(
                method, path, json=body, headers={"Authorization": "Bearer x.y.z"}
            )
            assert forged.status_code == 401, path
    await tenant.customer_says("privado")
    async with other_tenant.http() as http:
        mine = await http.get("/api/v1/conversations", headers=other_tenant.auth())
    assert mine.json() == []


async def test_disconnected_whatsapp_answers_503(tenant: Tenant) -> None:
    ctx = tenant.server.ctx
    await sessions_svc.set_state(ctx, tenant.session_id, state=SessionState.DISCONNECTED)
    async with tenant.http() as http:
        response = await http.post(
            f"/api/tenants/{tenant.id}/chat/send",
            json={"phone_number": PHONE, "text": "oi"},
            headers=tenant.auth(),
        )
    assert response.status_code == 503
    assert response.json()["error_code"] == "WHATSAPP_DISCONNECTED"


async def test_rate_limit_answers_429_with_retry_after(database_url: str) -> None:
    settings = settings_for(database_url, rate_limit_per_minute=3)
    async with run_server(settings) as limited:
        tenant = await make_tenant(limited)
        async with tenant.http() as http:
            codes = []
            for _ in range(4):
                r = await http.post(
                    f"/api/tenants/{tenant.id}/chat/send",
                    json={"phone_number": PHONE, "text": "oi"},
                    headers=tenant.auth(),
                )
                codes.append(r.status_code)
        assert codes == [200, 200, 200, 429]
        body = r.json()
        assert body["error_code"] == "RATE_LIMIT_EXCEEDED" and body["retry_after"] >= 1
        assert r.headers["Retry-After"] == str(body["retry_after"])


async def test_health_ready_and_openapi(server: Server) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        ready = await http.get("/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
        assert (await http.get("/docs")).status_code == 200
        spec = (await http.get("/openapi.json")).json()
    assert "/api/tenants/{tenant_id}/chat/send" in spec["paths"]


async def test_unknown_number_creates_lead_and_crm_notification(tenant: Tenant) -> None:
    from sqlalchemy import select

    from atende.db.models import Contact, CrmNotification

    await tenant.customer_says("primeira vez", phone="5521976543210")
    async with tenant.server.ctx.sessionmaker() as session:
        contact = (
            await session.execute(select(Contact).where(Contact.tenant_id == tenant.id))
        ).scalar_one()
        notes = (
            (
                await session.execute(
                    select(CrmNotification).where(CrmNotification.tenant_id == tenant.id)
                )
            )
            .scalars()
            .all()
        )
    assert (contact.first_name, contact.last_name) == ("Lead", "3210")
    assert (contact.source, contact.lead_status, contact.score) == ("WHATSAPP", "NEW", 50)
    assert [n.title for n in notes] == ["Nova mensagem de 5521976543210"]
    assert notes[0].user_id == tenant.admin_id


async def test_ninth_digit_variants_are_one_contact(tenant: Tenant) -> None:
    await tenant.customer_says("sem nove", phone="553187654321")  # as WhatsApp addresses it
    await tenant.customer_says("com nove", phone="5531987654321")  # as people type it
    async with tenant.http() as http:
        listed = (
            await http.get(f"/api/tenants/{tenant.id}/chat/conversations", headers=tenant.auth())
        ).json()["conversations"]
    assert len(listed) == 1 and listed[0]["phone_number"] == "5531987654321"
    assert listed[0]["unread_count"] == 2


async def test_new_contact_racing_creates_one_contact_and_one_conversation(tenant: Tenant) -> None:
    results = await asyncio.gather(
        *(tenant.customer_says(f"rajada {i}", phone="5511912340000") for i in range(8))
    )
    assert all(r.status_code == 200 for r in results)
    async with tenant.http() as http:
        listed = (await http.get("/api/v1/conversations", headers=tenant.auth())).json()
    assert len(listed) == 1 and listed[0]["unread_count"] == 8


async def test_webhook_errors_change_nothing(tenant: Tenant) -> None:
    async with tenant.http() as http:
        not_json = await http.post(
            "/api/webhooks/sandbox",
            content=b"{oops",
            headers={"X-Webhook-Secret": tenant.webhook_secret},
        )
        no_from = await http.post(
            "/api/webhooks/sandbox",
            json={"session": tenant.session_name, "text": "x"},
            headers={"X-Webhook-Secret": tenant.webhook_secret},
        )
        wrong_secret = await http.post(
            "/api/webhooks/sandbox",
            json={"session": tenant.session_name, "from": PHONE, "text": "x"},
            headers={"X-Webhook-Secret": "nope"},
        )
        unknown = await http.post(
            "/api/webhooks/sandbox",
            json={"session": f"ghost-{uuid.uuid4().hex}", "from": PHONE, "text": "x"},
        )
        listed = await http.get("/api/v1/conversations", headers=tenant.auth())
    assert not_json.status_code == 400 and not_json.json()["error_code"] == "INVALID_PAYLOAD"
    assert no_from.status_code == 400
    assert wrong_secret.status_code == 401
    assert unknown.status_code == 401  # as a wrong secret: names can not be probed
    assert unknown.content == wrong_secret.content
    assert listed.json() == []


@pytest.mark.parametrize("status", ["waiting", "assigned", "closed"])
async def test_status_filter(tenant: Tenant, status: str) -> None:
    await tenant.customer_says("oi")
    async with tenant.http() as http:
        conv = (await http.get("/api/v1/conversations", headers=tenant.auth())).json()[0]
        changed = await http.post(
            f"/api/v1/conversations/{conv['id']}/status",
            json={"status": status},
            headers=tenant.auth(),
        )
        assert changed.status_code == 200 and changed.json()["status"] == status
        hit = await http.get(
            "/api/v1/conversations", params={"status": status}, headers=tenant.auth()
        )
        miss = await http.get(
            "/api/v1/conversations", params={"status": "active"}, headers=tenant.auth()
        )
    assert [c["id"] for c in hit.json()] == [conv["id"]]
    assert miss.json() == []


async def test_conversation_list_total_follows_filters_and_visibility(tenant: Tenant) -> None:
    """X-Total-Count counts what the same filters would list, for admins and for agents."""
    for i, name in enumerate(("Ana", "Bruno", "Carla")):
        await tenant.customer_says(f"oi {i}", phone=f"551191234000{i}", push_name=name)
    ana = await tenant.conversation_where(lambda c: c["contact"]["push_name"] == "Ana")
    await tenant.assign(ana["id"], tenant.admin_id)
    async with tenant.http() as http:
        cases = [
            ("", tenant.admin_token, 3),
            ("?limit=1", tenant.admin_token, 3),
            ("?status=assigned", tenant.admin_token, 1),
            ("?search=bruno", tenant.admin_token, 1),
            ("?search=zzz", tenant.admin_token, 0),
            ("", tenant.agent_token, 2),  # the agent does not see Ana's, assigned to the admin
        ]
        for query, token, total in cases:
            response = await http.get(f"/api/v1/conversations{query}", headers=tenant.auth(token))
            assert response.status_code == 200
            assert int(response.headers["X-Total-Count"]) == total, query
            assert len(response.json()) == min(total, 1 if "limit=1" in query else total)


async def test_conversation_list_count_stops_at_its_cap(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past COUNT_CAP the list says "at least COUNT_CAP" instead of counting every row."""
    from atende.services import conversations as conv_svc

    for i in range(4):
        await tenant.customer_says(f"oi {i}", phone=f"551193333000{i}")
    async with tenant.http() as http:
        exact = await http.get("/api/v1/conversations", headers=tenant.auth())
        monkeypatch.setattr(conv_svc, "COUNT_CAP", 3)
        capped = await http.get("/api/v1/conversations", headers=tenant.auth())
        seed = await http.get(f"/api/tenants/{tenant.id}/chat/conversations", headers=tenant.auth())
    assert exact.headers["X-Total-Count"] == "4" and "X-Total-Count-Capped" not in exact.headers
    assert capped.headers["X-Total-Count"] == "3"
    assert capped.headers["X-Total-Count-Capped"] == "true"
    assert len(capped.json()) == 4  # the cap bounds the count, never the page
    assert (seed.json()["total"], seed.json()["total_capped"]) == (3, True)
