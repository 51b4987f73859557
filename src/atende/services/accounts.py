"""Tenants, users and login."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from atende.context import AppContext
from atende.db.models import Tenant, User
from atende.errors import Conflict, InvalidInput, NotFound, Unauthorized
from atende.services.auth import hash_password, verify_password
from atende.types import Role

MIN_PASSWORD_CHARS = 8


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
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(
            f"Password must have at least {MIN_PASSWORD_CHARS} characters",
            details={"field": "password"},
        )
    try:
        async with ctx.sessionmaker() as session, session.begin():
            if await session.get(Tenant, tenant_id) is None:
                raise NotFound("Tenant not found", details={"tenant_id": str(tenant_id)})
            user = User(
                tenant_id=tenant_id,
                email=email,
                name=(name or email.split("@")[0])[:200],
                password_hash=hash_password(password),
                role=role.value,
            )
            session.add(user)
    except IntegrityError as exc:
        raise Conflict("A user with this e-mail already exists") from exc
    return user


async def authenticate(ctx: AppContext, *, email: str, password: str) -> User:
    async with ctx.reader() as session:
        user = (
            await session.execute(select(User).where(User.email == email.strip().lower()))
        ).scalar_one_or_none()
    # Verify even when the user is missing would be kinder to timing; the hash dominates anyway.
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        raise Unauthorized("Invalid e-mail or password")
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


async def count_tenants(ctx: AppContext) -> int:
    async with ctx.reader() as session:
        return int((await session.execute(select(func.count(Tenant.id)))).scalar_one())
