"""Logging in and staying logged in: login, refresh-token rotation, logout, password change.

Refresh tokens are recorded (`RefreshToken`, by `jti`) in families: a login starts one, each
refresh uses its token up and issues the next of the same family. A used token presented again
after `refresh_reuse_grace_secs` means two parties hold it, one of them a thief: the family is
revoked and the user's `token_version` bumped, which ends every session of that user. (Within
the grace, a repeat is a client that lost the answer to its refresh, or two tabs racing: it
gets a fresh pair of the same family.)

Ending access — logout, password change, disabling or demoting a user — is `end_sessions`: the
version bump makes every earlier token fail `services.access.ensure_current`, and a
`user.revoked` event closes that user's open sockets on every instance.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from atende.context import AppContext
from atende.db.models import RefreshToken, User
from atende.db.types import utcnow
from atende.errors import Forbidden, Unauthorized
from atende.events.model import EventType
from atende.services import access
from atende.services.auth import decode_claims, mint, principal_of
from atende.services.passwords import check_new_password
from atende.services.tx import TenantTx, run_tenant_tx

logger = logging.getLogger(__name__)
WRONG_CREDENTIALS = "Invalid e-mail or password"


@dataclass(frozen=True)
class Issued:
    """What a login, refresh or password change hands the client."""

    user: User
    access_token: str
    refresh_token: str
    refresh_expires_at: int  # Unix seconds: the refresh cookie's lifetime
    expires_in: int  # the access token's lifetime in seconds


async def login(ctx: AppContext, *, email: str, password: str, ip: str | None) -> Issued:
    email = email.strip().lower()
    await ctx.login_throttle.check(email, ip)
    user = await _user_by_email(ctx, email)
    if user is None:
        await ctx.passwords.verify_dummy(password)  # as slow as a real check: no enumeration
        ok = False
    else:
        ok = await ctx.passwords.verify(user.password_hash, password) and user.is_active
    if user is None or not ok:
        await ctx.login_throttle.failed(email, ip)
        raise Unauthorized(WRONG_CREDENTIALS)
    await ctx.login_throttle.succeeded(email)
    return await run_tenant_tx(ctx, user.tenant_id, lambda tx: _issue(ctx, tx, user))


async def _user_by_email(ctx: AppContext, email: str) -> User | None:
    async with ctx.reader() as session:
        stmt = select(User).where(User.email == email)
        return (await session.execute(stmt)).scalar_one_or_none()


async def _issue(
    ctx: AppContext, tx: TenantTx, user: User, family_id: uuid.UUID | None = None
) -> Issued:
    """A new access token and a new recorded refresh token (of `family_id`, or a new family)."""
    settings = ctx.settings
    family = family_id or uuid.uuid4()
    access_token = mint(
        settings,
        user_id=user.id,
        tenant_id=user.tenant_id,
        role=user.role,
        version=user.token_version,
    )
    refresh = mint(
        settings,
        user_id=user.id,
        tenant_id=user.tenant_id,
        role=user.role,
        kind="refresh",
        version=user.token_version,
        family_id=family,
    )
    tx.session.add(
        RefreshToken(
            id=refresh.jti,
            tenant_id=user.tenant_id,
            user_id=user.id,
            family_id=family,
            created_at=utcnow(),
            expires_at=datetime.fromtimestamp(refresh.expires_at, UTC),
        )
    )
    return Issued(
        user=user,
        access_token=access_token.token,
        refresh_token=refresh.token,
        refresh_expires_at=refresh.expires_at,
        expires_in=settings.jwt_access_ttl_secs,
    )


async def refresh(ctx: AppContext, refresh_token: str) -> Issued:
    """Use a refresh token up and issue the next pair of its family."""
    claims = decode_claims(ctx.settings, refresh_token, kind="refresh")
    principal = principal_of(claims)
    jti = str(claims.get("jti", ""))

    async def work(tx: TenantTx) -> Issued | str:
        row = await tx.session.get(RefreshToken, jti, with_for_update=True)
        if row is None or row.user_id != principal.user_id or row.revoked_at is not None:
            return access.SESSION_ENDED
        user = await tx.session.get(User, row.user_id)
        if user is None or not user.is_active or user.token_version != principal.token_version:
            return access.SESSION_ENDED
        now = utcnow()
        grace = timedelta(seconds=ctx.settings.refresh_reuse_grace_secs)
        if row.used_at is not None and now - row.used_at > grace:
            logger.warning(
                "refresh token of user %s used again (family %s): ending all its sessions",
                user.id,
                row.family_id,
            )
            await end_sessions(tx, user)
            return "Refresh token already used; log in again"
        row.used_at = row.used_at or now
        return await _issue(ctx, tx, user, row.family_id)

    outcome = await run_tenant_tx(ctx, principal.tenant_id, work)
    if isinstance(outcome, str):
        # Decided inside the transaction, raised outside it: a reuse's revocation commits.
        raise Unauthorized(outcome)
    return outcome


async def end_sessions(tx: TenantTx, user: User) -> None:
    """Every token of `user` stops working now, and its open sockets close (4401)."""
    user.token_version += 1
    await tx.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await tx.emit(
        EventType.USER_REVOKED,
        {"user_id": str(user.id), "token_version": user.token_version},
        visible_to=user.id,
    )


async def logout(ctx: AppContext, user_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """Log the user out everywhere: a logged-out token must not keep working on another tab."""

    async def work(tx: TenantTx) -> None:
        user = await tx.session.get(User, user_id)
        if user is not None and user.tenant_id == tenant_id:
            await end_sessions(tx, user)

    await run_tenant_tx(ctx, tenant_id, work)


async def change_password(
    ctx: AppContext,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    current: str,
    new: str,
    ip: str | None,
) -> Issued:
    """Check the current password (throttled like a login), set the new one, end every other
    session, and hand this client a fresh pair."""
    async with ctx.reader() as session:
        user = await session.get(User, user_id)
    if user is None or user.tenant_id != tenant_id:
        raise Unauthorized(access.SESSION_ENDED)
    check_new_password(new, min_chars=ctx.settings.min_password_chars, email=user.email)
    await ctx.login_throttle.check(user.email, ip)
    if not await ctx.passwords.verify(user.password_hash, current):
        await ctx.login_throttle.failed(user.email, ip)
        raise Forbidden("The current password is not correct", details={"field": "current"})
    new_hash = await ctx.passwords.hash(new)

    async def work(tx: TenantTx) -> Issued:
        row = await tx.session.get(User, user_id)
        assert row is not None
        row.password_hash = new_hash
        await end_sessions(tx, row)
        return await _issue(ctx, tx, row)

    return await run_tenant_tx(ctx, tenant_id, work)
