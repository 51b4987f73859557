"""POST /api/v1/sandbox/messages: the simulator's way in, for the caller's sandbox sessions."""

from __future__ import annotations

import uuid

from atende.services import sessions as sessions_svc
from atende.types import ProviderName
from tests.harness import Tenant


async def test_simulated_message_takes_the_webhook_path(tenant: Tenant) -> None:
    async with tenant.http() as client:
        listed = await client.get("/api/v1/sandbox/sessions", headers=tenant.auth())
        assert listed.status_code == 200
        assert [s["name"] for s in listed.json()] == [tenant.session_name]
        assert "webhook_secret" not in listed.text

        sent = await client.post(
            "/api/v1/sandbox/messages",
            json={"from": "5511912340000", "text": "Oi do simulador", "push_name": "Júlia"},
            headers=tenant.auth(),  # an admin: agents may not play customers
        )
        assert sent.status_code == 200, sent.text
        body = sent.json()
        assert body["stored"] == 1
        assert body["session_id"] == str(tenant.session_id)
        messages = await client.get(
            f"/api/v1/conversations/{body['conversation_id']}/messages", headers=tenant.auth()
        )
    [message] = messages.json()
    assert message["direction"] == "inbound"
    assert message["content"]["text"] == "Oi do simulador"
    assert message["push_name"] == "Júlia"


async def test_refuses_other_tenants_and_non_sandbox_sessions(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    gateway = await sessions_svc.create_session(
        tenant.server.ctx,
        tenant_id=tenant.id,
        provider=ProviderName.EVOLUTION,
        name=f"evo-{uuid.uuid4().hex[:8]}",
        base_url="http://127.0.0.1:9",
    )
    cases = [
        (other_tenant.session_id, 404, "NOT_FOUND"),
        (uuid.uuid4(), 404, "NOT_FOUND"),
        (gateway.id, 400, "INVALID_INPUT"),
    ]
    async with tenant.http() as client:
        for session_id, status, code in cases:
            response = await client.post(
                "/api/v1/sandbox/messages",
                json={"session_id": str(session_id), "from": "5511900000000", "text": "oi"},
                headers=tenant.auth(),
            )
            assert response.status_code == status, response.text
            assert response.json()["error_code"] == code
        anonymous = await client.post(
            "/api/v1/sandbox/messages", json={"from": "5511900000000", "text": "oi"}
        )
        assert anonymous.status_code == 401
        empty = await client.post(
            "/api/v1/sandbox/messages",
            json={"from": "5511900000000", "text": ""},
            headers=tenant.auth(),
        )
        assert empty.status_code == 400
        listed = await client.get("/api/v1/sandbox/sessions", headers=tenant.auth())
    assert [s["name"] for s in listed.json()] == [tenant.session_name]
