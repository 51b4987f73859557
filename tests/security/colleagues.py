"""Helpers of the conversation-access and replay tests: a second agent, REST shortcuts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from atende.services import accounts
from atende.services.auth import mint_token
from atende.types import Role
from tests.harness import Tenant


@dataclass(frozen=True)
class Agent:
    id: uuid.UUID
    token: str


async def another_agent(tenant: Tenant) -> Agent:
    """A second agent of `tenant` (the harness gives one admin and one agent)."""
    ctx = tenant.server.ctx
    user = await accounts.create_user(
        ctx,
        tenant_id=tenant.id,
        email=f"colleague-{uuid.uuid4().hex[:10]}@t.test",
        password=tenant.password,
        role=Role.AGENT,
    )
    token = mint_token(ctx.settings, user_id=user.id, tenant_id=tenant.id, role=Role.AGENT.value)
    return Agent(user.id, token)


async def conversations_of(tenant: Tenant, phone: str) -> list[dict[str, Any]]:
    """Every conversation of the contact with this phone, as the admin's list shows them."""
    async with tenant.http() as http:
        listed = (await http.get("/api/v1/conversations?limit=200", headers=tenant.auth())).json()
    return [c for c in listed if c["contact"]["phone_number"] == phone]


async def set_status(tenant: Tenant, conversation_id: str, status: str) -> None:
    async with tenant.http() as http:
        answer = await http.post(
            f"/api/v1/conversations/{conversation_id}/status",
            json={"status": status},
            headers=tenant.auth(),
        )
    assert answer.status_code == 200, answer.text


async def messages_in(tenant: Tenant, conversation_id: str) -> list[dict[str, Any]]:
    async with tenant.http() as http:
        answer = await http.get(
            f"/api/v1/conversations/{conversation_id}/messages", headers=tenant.auth()
        )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found
