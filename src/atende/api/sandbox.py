"""The customer simulator: play a customer writing to one of the tenant's sandbox sessions.

Administrators only, and only while the sandbox is on (`Settings.sandbox_on`; otherwise these
routes are not mounted at all): a simulated customer message is indistinguishable from a real
one in the inbox, so an agent must not be able to make one up.

The message takes the same path a gateway's webhook does (parse → dedupe → store → events), so
what the inbox shows is exactly what a real customer's message would produce.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from atende import webhooks
from atende.api.deps import AdminPrincipal, CtxDep
from atende.context import AppContext
from atende.db.models import Message, WhatsAppSession
from atende.errors import InvalidInput, NotFound
from atende.services import sessions as sessions_svc
from atende.types import ProviderName

router = APIRouter(prefix="/api/v1/sandbox", tags=["sandbox (customer simulator)"])


class SandboxMessageIn(BaseModel):
    session_id: uuid.UUID | None = None
    sender: str = Field(alias="from", min_length=1, max_length=32)
    text: str = Field(min_length=1, max_length=4096)
    push_name: str | None = Field(default=None, max_length=200)


def _sandbox_public(row: WhatsAppSession) -> dict[str, Any]:
    return {"id": str(row.id), "name": row.name, "state": row.state}


async def _sandbox_sessions(ctx: AppContext, tenant_id: uuid.UUID) -> list[WhatsAppSession]:
    rows = await sessions_svc.list_for_tenant(ctx, tenant_id)
    return [r for r in rows if r.provider == ProviderName.SANDBOX.value]


async def _pick_session(
    ctx: AppContext, tenant_id: uuid.UUID, session_id: uuid.UUID | None
) -> WhatsAppSession:
    if session_id is None:
        found = await _sandbox_sessions(ctx, tenant_id)
        if not found:
            raise NotFound("This tenant has no sandbox session")
        return found[0]
    async with ctx.reader() as session:
        row = await session.get(WhatsAppSession, session_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound("Session not found", details={"session_id": str(session_id)})
    if row.provider != ProviderName.SANDBOX.value:
        raise InvalidInput(
            "Only sandbox sessions can receive simulated messages",
            details={"session_id": str(session_id), "provider": row.provider},
        )
    return row


@router.get("/sessions")
async def list_sandbox_sessions(principal: AdminPrincipal, ctx: CtxDep) -> list[dict[str, Any]]:
    """The caller's tenant's sandbox sessions (the simulator's phone lines)."""
    return [_sandbox_public(r) for r in await _sandbox_sessions(ctx, principal.tenant_id)]


@router.post("/messages")
async def simulate_customer_message(
    body: SandboxMessageIn, principal: AdminPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Play a customer's text message into a sandbox session, as its webhook would bring it."""
    row = await _pick_session(ctx, principal.tenant_id, body.session_id)
    provider_message_id = f"sim-{uuid.uuid4().hex}"
    raw = orjson.dumps(
        {
            "session": row.name,
            "from": body.sender,
            "text": body.text,
            "push_name": body.push_name,
            "id": provider_message_id,
        }
    )
    headers = {"x-webhook-secret": row.webhook_secret or ""}
    sandbox = ctx.provider(ProviderName.SANDBOX.value)
    outcome = await webhooks.handle(ctx, sandbox, raw, headers, token=row.webhook_token)
    conversation_id = await _conversation_of(ctx, row.id, provider_message_id)
    return {
        "ok": True,
        "stored": outcome.stored,
        "session_id": str(row.id),
        "conversation_id": conversation_id,
    }


async def _conversation_of(
    ctx: AppContext, session_id: uuid.UUID, provider_message_id: str
) -> str | None:
    async with ctx.reader() as session:
        stmt = select(Message.conversation_id).where(
            Message.session_id == session_id, Message.whatsapp_message_id == provider_message_id
        )
        found = (await session.execute(stmt)).scalar_one_or_none()
    return None if found is None else str(found)
