"""services.routing's rules for the number a message leaves from, at their edges."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import update

from atende.db.models import Conversation
from atende.services import accounts
from atende.services import sessions as sessions_svc
from atende.services.auth import mint_token
from atende.types import ProviderName, Role
from tests.harness import Server, Tenant
from tests.security.colleagues import conversations_of


async def test_a_tenant_without_any_whatsapp_is_disconnected(server: Server) -> None:
    ctx = server.ctx
    tenant = await accounts.create_tenant(ctx, name=f"Sem WhatsApp {uuid.uuid4().hex[:6]}")
    admin = await accounts.create_user(
        ctx,
        tenant_id=tenant.id,
        email=f"admin-{uuid.uuid4().hex[:8]}@t.test",
        password="correct-horse-battery",
        role=Role.ADMIN,
    )
    token = mint_token(ctx.settings, user_id=admin.id, tenant_id=tenant.id, role="admin")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        answer = await http.post(
            f"/api/tenants/{tenant.id}/chat/send",
            json={"phone_number": "5511987650000", "text": "oi"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert (answer.status_code, answer.json()["error_code"]) == (503, "WHATSAPP_DISCONNECTED")


async def test_a_conversation_that_lost_its_number_asks_for_one(tenant: Tenant) -> None:
    """Its session deleted (the column is SET NULL): with two numbers left, the reply must say
    which; once said, the conversation keeps it."""
    phone = "5511987650001"
    await tenant.customer_says("oi", phone=phone)
    [conv] = await conversations_of(tenant, phone)
    number2 = await sessions_svc.create_session(
        tenant.server.ctx,
        tenant_id=tenant.id,
        provider=ProviderName.SANDBOX,
        name=f"outro-{uuid.uuid4().hex[:8]}",
        webhook_secret=uuid.uuid4().hex,
    )
    async with tenant.server.ctx.sessionmaker() as session, session.begin():
        await session.execute(
            update(Conversation)
            .where(Conversation.id == uuid.UUID(conv["id"]))
            .values(session_id=None)
        )
    url = f"/api/v1/conversations/{conv['id']}/messages"
    async with tenant.http() as http:
        asked = await http.post(url, json={"content": "olá"}, headers=tenant.auth())
        assert asked.status_code == 400 and asked.json()["error_code"] == "SESSION_REQUIRED"
        chosen = await http.post(
            url, json={"content": "olá", "session_id": str(number2.id)}, headers=tenant.auth()
        )
        assert chosen.status_code == 200, chosen.text
        again = await http.post(url, json={"content": "de novo"}, headers=tenant.auth())
        assert again.status_code == 200, again.text
    [kept] = await conversations_of(tenant, phone)
    assert kept["session_id"] == str(number2.id)
