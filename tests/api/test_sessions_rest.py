"""Session creation: every session's webhooks are authenticated; a secret is made if none given."""

from __future__ import annotations

import uuid

from tests.harness import Tenant


async def test_a_session_created_without_a_secret_gets_one_and_enforces_it(tenant: Tenant) -> None:
    name = f"sem-segredo-{uuid.uuid4().hex[:8]}"
    async with tenant.http() as http:
        created = await http.post(
            "/api/v1/whatsapp/sessions",
            json={"provider": "sandbox", "name": name},
            headers=tenant.auth(),
        )
        assert created.status_code == 201, created.text
        secret = created.json()["webhook_secret"]
        assert len(secret) >= 24 and created.json()["has_webhook_secret"] is True
        listed = await http.get("/api/v1/whatsapp/sessions", headers=tenant.auth())
        assert secret not in listed.text  # shown once, at creation only
        body = {"session": name, "from": "5511955554444", "text": "oi", "id": uuid.uuid4().hex}
        anonymous = await http.post("/api/webhooks/sandbox", json=body)
        signed = await http.post(
            "/api/webhooks/sandbox", json=body, headers={"X-Webhook-Secret": secret}
        )
    assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "UNAUTHORIZED"
    assert signed.status_code == 200 and signed.json()["stored"] == 1


async def test_a_cloud_session_needs_its_app_secret(tenant: Tenant) -> None:
    async with tenant.http() as http:
        refused = await http.post(
            "/api/v1/whatsapp/sessions",
            json={"provider": "cloud", "name": str(uuid.uuid4().int)[:15], "api_key": "token"},
            headers=tenant.auth(),
        )
        sessions = await http.get("/api/v1/whatsapp/sessions", headers=tenant.auth())
    assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_INPUT"
    assert refused.json()["details"]["field"] == "webhook_secret"
    assert all(s["provider"] != "cloud" for s in sessions.json())
