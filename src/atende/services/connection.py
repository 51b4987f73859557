"""Connecting a tenant's WhatsApp: start the gateway session, show its QR, log out (seed 003)."""

from __future__ import annotations

import uuid

from atende.context import AppContext
from atende.db.models import WhatsAppSession
from atende.errors import Forbidden, GatewayAddressNotAllowed, GatewayError, NotFound
from atende.providers.base import (
    GatewayAddressRefused,
    GatewayRejected,
    GatewayUnavailable,
    ProviderError,
    SessionConfig,
)
from atende.providers.http import with_default_timeout
from atende.services import sessions as sessions_svc
from atende.services.auth import Principal
from atende.types import SessionState


async def owned_session(
    ctx: AppContext, principal: Principal, session_id: uuid.UUID | None
) -> WhatsAppSession:
    """The caller's session by id, or the tenant's primary one."""
    if session_id is None:
        row = await sessions_svc.primary(ctx, principal.tenant_id)
        if row is None:
            raise NotFound("This tenant has no WhatsApp session yet; create one first")
        return row
    for row in await sessions_svc.list_for_tenant(ctx, principal.tenant_id):
        if row.id == session_id:
            return row
    raise NotFound("WhatsApp session not found", details={"session_id": str(session_id)})


def _config(ctx: AppContext, row: WhatsAppSession) -> SessionConfig:
    return with_default_timeout(sessions_svc.config_of(row, ctx), ctx.settings.gateway_timeout_secs)


def _gateway_error(exc: ProviderError) -> GatewayError:
    """exc.reason is Atende's own wording: a gateway's answer is logged, never returned."""
    if isinstance(exc, GatewayAddressRefused):
        return GatewayAddressNotAllowed(
            "The gateway's address is not one Atende may connect to"
            " (ATENDE_GATEWAY_ALLOWED_NETWORKS)"
        )
    kind = "unreachable" if isinstance(exc, GatewayUnavailable) else "refused the request"
    return GatewayError(f"The WhatsApp gateway {kind}: {exc.reason}")


async def connect(ctx: AppContext, principal: Principal, row: WhatsAppSession) -> WhatsAppSession:
    if not principal.is_admin:
        raise Forbidden("Only administrators can connect WhatsApp")
    provider = ctx.provider(row.provider)
    await sessions_svc.set_state(ctx, row.id, state=SessionState.CONNECTING)
    try:
        result = await provider.connect(ctx.http, _config(ctx, row))
    except (GatewayRejected, GatewayUnavailable, ProviderError) as exc:
        await sessions_svc.set_state(ctx, row.id, state=SessionState.DISCONNECTED, error=exc.reason)
        raise _gateway_error(exc) from exc
    return await sessions_svc.set_state(ctx, row.id, state=result.state, qr=result.qr)


async def refresh_status(ctx: AppContext, row: WhatsAppSession) -> WhatsAppSession:
    """Ask the gateway; a gateway that does not answer leaves the stored state as it was."""
    provider = ctx.provider(row.provider)
    try:
        state = await provider.status(ctx.http, _config(ctx, row))
    except ProviderError:
        return row
    if state.value == row.state:
        return row
    keep_qr = row.qr if state == SessionState.QR else None
    return await sessions_svc.set_state(ctx, row.id, state=state, qr=keep_qr)


async def disconnect(
    ctx: AppContext, principal: Principal, row: WhatsAppSession
) -> WhatsAppSession:
    if not principal.is_admin:
        raise Forbidden("Only administrators can disconnect WhatsApp")
    provider = ctx.provider(row.provider)
    try:
        await provider.disconnect(ctx.http, _config(ctx, row))
    except ProviderError as exc:
        raise _gateway_error(exc) from exc
    return await sessions_svc.set_state(ctx, row.id, state=SessionState.DISCONNECTED)
