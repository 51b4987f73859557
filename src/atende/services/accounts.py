"""Tenants and users: creating them, and changing who may do what."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from atende.context import AppContext
from atende.db.models import Tenant, User
from atende.errors import Conflict, InvalidInput, NotFound, Unauthorized
from atende.services.auth import Principal
from atende.services.login import end_sessions
from atende.services.passwords import check_new_password
from atende.services.tx import TenantTx, run_tenant_tx
from atende.types import Role


async def create_tenant(ctx: AppContext, *, name: str) -> Tenant:
    name = name.strip()
    if not name:
        raise InvalidInput("Tenant name must not be empty")
    async with ctx.sessionmaker() as session, session.begin():
        tenant = Tenant(name=name[:200])
        session.add(tenant)
    return tenant


async def create_user(
    ctx: AppContext,
    *,
    tenant_id: uuid.UUID,
    email: str,
    password: str,
    role: Role,
    name: str | None = None,
) -> User:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InvalidInput("A valid e-mail address is required", details={"field": "email"})
    check_new_password(password, min_chars=ctx.settings.min_password_chars, email=email)
    password_hash = await ctx.passwords.hash(password)
    try:
        async with ctx.sessionmaker() as session, session.begin():
            if await session.get(Tenant, tenant_id) is None:
                raise NotFound("Tenant not found", details={"tenant_id": str(tenant_id)})
            user = User(
                tenant_id=tenant_id,
                email=email,
                name=(name or email.split("@")[0])[:200],
                password_hash=password_hash,
                role=role.value,
            )
            session.add(user)
    except IntegrityError as exc:
        raise Conflict("A user with this e-mail already exists") from exc
    return user


async def get_user(ctx: AppContext, user_id: uuid.UUID) -> User:
    async with ctx.reader() as session:
        user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("User no longer exists")
    return user


async def list_users(ctx: AppContext, *, tenant_id: uuid.UUID) -> list[User]:
    async with ctx.reader() as session:
        stmt = select(User).where(User.tenant_id == tenant_id).order_by(User.name)
        return list((await session.execute(stmt)).scalars())


async def update_user(
    ctx: AppContext,
    admin: Principal,
    user_id: uuid.UUID,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
    name: str | None = None,
) -> User:
    """An admin changes a user of its tenant. A new role or disabling ends the user's
    sessions at once (REST and open sockets); an admin can not lock itself out."""
    if user_id == admin.user_id and (role == Role.AGENT or is_active is False):
        raise InvalidInput(
            "You can not demote or disable yourself; ask another administrator",
            details={"user_id": str(user_id)},
        )

    async def work(tx: TenantTx) -> User:
        user = await tx.session.get(User, user_id)
        if user is None or user.tenant_id != admin.tenant_id:
            raise NotFound("User not found", details={"user_id": str(user_id)})
        changed_access = (role is not None and role.value != user.role) or (
            is_active is not None and is_active != user.is_active
        )
        if role is not None:
            user.role = role.value
        if is_active is not None:
            user.is_active = is_active
        if name is not None and name.strip():
            user.name = name.strip()[:200]
        if changed_access:
            await end_sessions(tx, user)
        return user

    return await run_tenant_tx(ctx, admin.tenant_id, work)


async def count_tenants(ctx: AppContext) -> int:
    async with ctx.reader() as session:
        return int((await session.execute(select(func.count(Tenant.id)))).scalar_one())
