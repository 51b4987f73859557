"""Login and token refresh."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from atende.api.deps import CtxDep, CurrentPrincipal
from atende.context import AppContext
from atende.db.models import User
from atende.services import accounts
from atende.services.auth import decode_token, mint_token
from atende.services.render import user_public

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class RefreshIn(BaseModel):
    refresh_token: str = Field(max_length=4096)


def _tokens(ctx: AppContext, user: User) -> dict[str, Any]:
    def token(kind: str) -> str:
        return mint_token(
            ctx.settings, user_id=user.id, tenant_id=user.tenant_id, role=user.role, kind=kind
        )

    return {
        "access_token": token("access"),
        "refresh_token": token("refresh"),
        "token_type": "bearer",
        "expires_in": ctx.settings.jwt_access_ttl_secs,
        "user": user_public(user),
    }


@router.post("/login")
async def login(body: LoginIn, ctx: CtxDep) -> dict[str, Any]:
    """Exchange e-mail and password for an access and a refresh token."""
    user = await accounts.authenticate(ctx, email=body.email, password=body.password)
    return _tokens(ctx, user)


@router.post("/refresh")
async def refresh(body: RefreshIn, ctx: CtxDep) -> dict[str, Any]:
    """Exchange a refresh token for a new pair."""
    principal = decode_token(ctx.settings, body.refresh_token, kind="refresh")
    user = await accounts.get_user(ctx, principal.user_id)
    return _tokens(ctx, user)


@router.get("/me")
async def me(principal: CurrentPrincipal, ctx: CtxDep) -> dict[str, Any]:
    """The logged-in user."""
    return user_public(await accounts.get_user(ctx, principal.user_id))
