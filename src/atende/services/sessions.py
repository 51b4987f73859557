"""WhatsApp sessions (a tenant's connection to a gateway) and their live state."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from atende import netguard
from atende.context import AppContext
from atende.db.models import Tenant, WhatsAppSession
from atende.db.types import utcnow
from atende.errors import Conflict, InvalidBaseUrl, InvalidInput, NotFound, WhatsAppDisconnected
from atende.events.model import EventType
from atende.providers.base import SessionConfig
from atende.services.tx import TenantTx, run_tenant_tx
from atende.types import ProviderName, SessionState


def config_of(row: WhatsAppSession, ctx: AppContext | None = None) -> SessionConfig:
    options: dict[str, Any] = dict(row.options or {})
    if ctx is not None:
        options.setdefault(
            "webhook_url", f"{ctx.settings.public_url.rstrip('/')}/api/webhooks/{row.provider}"
        )
    return SessionConfig(
        provider=ProviderName(row.provider),
        name=row.name,
        base_url=row.base_url,
        api_key=row.api_key,
        webhook_secret=row.webhook_secret,
        options=options,
    )


async def create_session(
    ctx: AppContext,
    *,
    tenant_id: uuid.UUID,
    provider: ProviderName,
    name: str,
    base_url: str | None = None,
    api_key: str | None = None,
    webhook_secret: str | None = None,
    options: dict[str, Any] | None = None,
) -> WhatsAppSession:
    name = name.strip()
    if not name:
        raise InvalidInput("Session name must not be empty", details={"field": "name"})
    if provider not in (ProviderName.SANDBOX,) and not base_url and provider != ProviderName.CLOUD:
        raise InvalidInput(
            f"A {provider.value} session needs base_url", details={"field": "base_url"}
        )
    _check_urls(name, base_url, options or {})
    webhook_secret = webhook_secret or _new_webhook_secret(provider)
    state = (
        SessionState.CONNECTED if provider == ProviderName.SANDBOX else SessionState.DISCONNECTED
    )
    try:
        async with ctx.sessionmaker() as session, session.begin():
            if await session.get(Tenant, tenant_id) is None:
                raise NotFound("Tenant not found", details={"tenant_id": str(tenant_id)})
            row = WhatsAppSession(
                tenant_id=tenant_id,
                provider=provider.value,
                name=name,
                base_url=base_url,
                api_key=api_key,
                webhook_secret=webhook_secret,
                options=options or {},
                state=state.value,
            )
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(f"A {provider.value} session named {name!r} already exists") from exc
    return row


SESSION_CACHE_SECS = 5.0


def _check_urls(name: str, base_url: str | None, options: dict[str, Any]) -> None:
    """What goes into gateway URLs must not pick their path (see netguard)."""
    for field, url in (("base_url", base_url), ("options.graph_url", options.get("graph_url"))):
        problem = netguard.base_url_problem(str(url)) if url else None
        if problem is not None:
            raise InvalidBaseUrl(problem, details={"field": field})
    for field, value in (("name", name), ("options.api_version", options.get("api_version"))):
        problem = netguard.path_segment_problem(str(value)) if value else None
        if problem is not None:
            raise InvalidInput(f"{field} {problem}", details={"field": field})


def _new_webhook_secret(provider: ProviderName) -> str:
    """Every session's webhooks are authenticated: with no secret given, make one (the connect
    flow hands it to the gateway). A Cloud API app secret is Meta's, so it cannot be made up."""
    if provider == ProviderName.CLOUD:
        raise InvalidInput(
            "A Cloud API session needs webhook_secret: the app secret that signs its webhooks",
            details={"field": "webhook_secret"},
        )
    return secrets.token_urlsafe(24)


async def find_by_name(ctx: AppContext, provider: str, name: str) -> WhatsAppSession | None:
    async with ctx.reader() as session:
        stmt = select(WhatsAppSession).where(
            WhatsAppSession.provider == provider, WhatsAppSession.name == name
        )
        return (await session.execute(stmt)).scalar_one_or_none()


async def find_for_webhook(ctx: AppContext, provider: str, name: str) -> WhatsAppSession | None:
    """`find_by_name` behind a short per-instance cache: every webhook needs its session, and a
    session's identity and credentials never change after creation (only its connection state
    does, which webhook handling does not read), so a few seconds of reuse is safe and saves a
    database round trip per webhook. Unknown names are not cached."""
    key = (provider, name)
    now = time.monotonic()
    hit = ctx.session_cache.get(key)
    if hit is not None and now - hit[0] < SESSION_CACHE_SECS:
        return hit[1]
    row = await find_by_name(ctx, provider, name)
    if row is not None:
        ctx.session_cache[key] = (now, row)
    return row


async def list_for_tenant(ctx: AppContext, tenant_id: uuid.UUID) -> list[WhatsAppSession]:
    async with ctx.reader() as session:
        stmt = (
            select(WhatsAppSession)
            .where(WhatsAppSession.tenant_id == tenant_id)
            .order_by(WhatsAppSession.created_at)
        )
        return list((await session.execute(stmt)).scalars())


async def primary(ctx: AppContext, tenant_id: uuid.UUID) -> WhatsAppSession | None:
    """The session seed 003's tenant-wide routes act on: a connected one first, else the oldest.
    (Messages do not use it: each leaves through its conversation's session, services.routing.)"""
    found = await list_for_tenant(ctx, tenant_id)
    connected = [s for s in found if s.state == SessionState.CONNECTED.value]
    ordered = connected or found
    return ordered[0] if ordered else None


def ensure_connected(row: WhatsAppSession) -> None:
    """A send through `row` fails fast while it is down (SPEC §4), whatever other session is up."""
    if row.state != SessionState.CONNECTED.value:
        raise WhatsAppDisconnected(
            "WhatsApp disconnected. Please reconnect.", details={"session_id": str(row.id)}
        )


def connection_payload(row: WhatsAppSession) -> dict[str, Any]:
    return {
        "whatsapp_connected": row.state == SessionState.CONNECTED.value,
        "instance_id": row.name,
        "session_id": str(row.id),
        "provider": row.provider,
        "state": row.state,
        "qr": row.qr,
        "error": row.last_error,
    }


async def set_state(
    ctx: AppContext,
    session_id: uuid.UUID,
    *,
    state: SessionState,
    qr: str | None = None,
    error: str | None = None,
    phone: str | None = None,
) -> WhatsAppSession:
    """Record a connection change and tell every agent (`connection_status`)."""
    async with ctx.reader() as session:
        row0 = await session.get(WhatsAppSession, session_id)
    if row0 is None:
        raise NotFound("Session not found")

    async def work(tx: TenantTx) -> WhatsAppSession:
        row = await tx.session.get(WhatsAppSession, session_id)
        assert row is not None
        changed = (row.state, row.qr, row.last_error) != (state.value, qr, error)
        row.state = state.value
        row.qr = qr if state == SessionState.QR else None
        row.last_error = error
        if phone:
            row.phone = phone
        row.updated_at = utcnow()
        if changed:
            await tx.emit(EventType.CONNECTION_STATUS, connection_payload(row))
        return row

    return await run_tenant_tx(ctx, row0.tenant_id, work)
