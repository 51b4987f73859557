"""WhatsApp sessions (a tenant's connection to a gateway) and their live state."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from atende import netguard
from atende.config import Settings
from atende.context import AppContext
from atende.db.models import Tenant, WebhookEvent, WhatsAppSession
from atende.db.types import utcnow
from atende.errors import (
    Conflict,
    InvalidBaseUrl,
    InvalidInput,
    NotFound,
    SessionAmbiguous,
    WhatsAppDisconnected,
)
from atende.events.model import EventType
from atende.providers.base import SessionConfig
from atende.services.render import webhook_path
from atende.services.tx import TenantTx, run_tenant_tx
from atende.types import ProviderName, SessionState


def webhook_url(settings: Settings, row: WhatsAppSession) -> str:
    return settings.public_url.rstrip("/") + webhook_path(row)


def config_of(row: WhatsAppSession, ctx: AppContext | None = None) -> SessionConfig:
    options: dict[str, Any] = dict(row.options or {})
    if ctx is not None:
        options.setdefault("webhook_url", webhook_url(ctx.settings, row))
    return SessionConfig(
        provider=ProviderName(row.provider),
        name=row.name,
        base_url=row.base_url,
        api_key=row.api_key,
        webhook_secret=row.webhook_secret,
        options=options,
        session_id=str(row.id),
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
    ctx.session_cache.pop((provider.value, name), None)
    return row


SESSION_CACHE_SECS = 5.0
SESSION_CACHE_MAX = 10_000  # misses are cached too: strangers' made-up names must not pile up


async def check_secret_key(ctx: AppContext) -> None:
    """Open one stored secret, so that a wrong ATENDE_SECRET_KEY stops the start with a clear
    SecretKeyMismatch instead of failing every gateway call later."""
    async with ctx.reader() as session:
        stmt = (
            select(WhatsAppSession.webhook_secret)
            .where(WhatsAppSession.webhook_secret.is_not(None))
            .limit(1)
        )
        await session.execute(stmt)


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


async def find_all_by_name(ctx: AppContext, provider: str, name: str) -> list[WhatsAppSession]:
    """Every tenant's session of `provider` called `name` (names are unique per tenant only)."""
    async with ctx.reader() as session:
        stmt = select(WhatsAppSession).where(
            WhatsAppSession.provider == provider, WhatsAppSession.name == name
        )
        return list((await session.execute(stmt)).scalars())


async def find_by_name(ctx: AppContext, provider: str, name: str) -> WhatsAppSession | None:
    """The one session of `provider` called `name`; SessionAmbiguous when tenants share it."""
    found = await find_all_by_name(ctx, provider, name)
    if len(found) > 1:
        raise SessionAmbiguous(
            f"More than one {provider} session is named {name[:100]!r}: use its session id "
            "or its own webhook URL"
        )
    return found[0] if found else None


async def find_in_tenant(
    ctx: AppContext, tenant_id: uuid.UUID, provider: str, name: str
) -> WhatsAppSession | None:
    async with ctx.reader() as session:
        stmt = select(WhatsAppSession).where(
            WhatsAppSession.tenant_id == tenant_id,
            WhatsAppSession.provider == provider,
            WhatsAppSession.name == name,
        )
        return (await session.execute(stmt)).scalar_one_or_none()


async def find_by_token(ctx: AppContext, provider: str, token: str) -> WhatsAppSession | None:
    async with ctx.reader() as session:
        stmt = select(WhatsAppSession).where(
            WhatsAppSession.provider == provider, WhatsAppSession.webhook_token == token
        )
        return (await session.execute(stmt)).scalar_one_or_none()


async def _cached(
    ctx: AppContext,
    key: tuple[str, str],
    load: Callable[[], Awaitable[list[WhatsAppSession]]],
) -> list[WhatsAppSession]:
    """A short per-instance cache for webhook lookups: every webhook needs its session, and a
    session's identity and credentials never change after creation (only its connection state
    does, which webhook handling does not read), so a few seconds of reuse is safe and saves a
    database round trip per webhook. Misses are cached too: otherwise an unknown name would
    answer a database round trip slower than a busy known one, and timing would tell them apart.
    (`create_session` forgets this instance's miss for its name at once.)"""
    now = time.monotonic()
    hit = ctx.session_cache.get(key)
    if hit is not None and now - hit[0] < SESSION_CACHE_SECS:
        return hit[1]
    rows = await load()
    if len(ctx.session_cache) >= SESSION_CACHE_MAX:
        _evict(ctx.session_cache, now)
    ctx.session_cache[key] = (now, rows)
    return rows


def _evict(cache: dict[tuple[str, str], tuple[float, list[WhatsAppSession]]], now: float) -> None:
    for key in [k for k, (at, _) in cache.items() if now - at >= SESSION_CACHE_SECS]:
        del cache[key]
    if len(cache) >= SESSION_CACHE_MAX:  # all fresh: a flood; start over rather than grow
        cache.clear()


async def candidates_for_webhook(
    ctx: AppContext, provider: str, name: str
) -> list[WhatsAppSession]:
    """The sessions a name-addressed webhook may be for; its credentials pick one."""
    return await _cached(ctx, (provider, name), lambda: find_all_by_name(ctx, provider, name))


async def find_for_token(ctx: AppContext, provider: str, token: str) -> WhatsAppSession | None:
    async def load() -> list[WhatsAppSession]:
        row = await find_by_token(ctx, provider, token)
        return [] if row is None else [row]

    # Its own key space ("<provider>#token"), apart from names: no name can alias a token.
    rows = await _cached(ctx, (f"{provider}#token", token), load)
    return rows[0] if rows else None


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
    row = await apply_state(ctx, session_id, state=state, qr=qr, error=error, phone=phone)
    assert row is not None  # only an event id can make it a duplicate
    return row


async def apply_state(
    ctx: AppContext,
    session_id: uuid.UUID,
    *,
    state: SessionState,
    qr: str | None = None,
    error: str | None = None,
    phone: str | None = None,
    event_id: str | None = None,
) -> WhatsAppSession | None:
    """`set_state`, once per provider event id: None when that event was applied before (a
    replayed `session.status STOPPED` must not disconnect a session that came back since)."""
    async with ctx.reader() as session:
        row0 = await session.get(WhatsAppSession, session_id)
    if row0 is None:
        raise NotFound("Session not found")

    async def work(tx: TenantTx) -> WhatsAppSession | None:
        if event_id is not None and not await _first_sight(tx, session_id, event_id):
            return None
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

    # Two deliveries of one event at once: the loser's insert fails, its retry sees the id.
    return await run_tenant_tx(ctx, row0.tenant_id, work)


async def _first_sight(tx: TenantTx, session_id: uuid.UUID, event_id: str) -> bool:
    event_id = event_id[:200]
    if await tx.session.get(WebhookEvent, (session_id, event_id)) is not None:
        return False
    tx.session.add(WebhookEvent(session_id=session_id, event_id=event_id))
    await tx.session.flush()
    return True
