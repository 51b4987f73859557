"""Login, token refresh (rotating), logout and password change.

Two ways to hold the refresh token, chosen at login (`refresh_token_in`):
- `body` (API clients, the default): it comes in the JSON answer and goes back in the body.
- `cookie` (the web inbox): it lives only in an HttpOnly, SameSite=Strict cookie scoped to
  `/api/v1/auth`, out of reach of any script running in the page; the JSON answer never
  carries it, so not even a script that can call `/refresh` can read it.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from atende.api.deps import CtxDep, CurrentPrincipal, client_ip
from atende.context import AppContext
from atende.errors import Forbidden, Unauthorized
from atende.origin import origin_allowed
from atende.services import accounts, login
from atende.services.passwords import MAX_PASSWORD_CHARS
from atende.services.render import user_public

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
REFRESH_COOKIE = "atende_refresh"
COOKIE_PATH = "/api/v1/auth"  # sent to refresh and logout only, never to the rest of the API

Holder = Literal["body", "cookie"]


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=MAX_PASSWORD_CHARS)
    refresh_token_in: Holder = "body"


class RefreshIn(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=4096)


class PasswordIn(BaseModel):
    current_password: str = Field(max_length=MAX_PASSWORD_CHARS)
    new_password: str = Field(max_length=MAX_PASSWORD_CHARS)
    refresh_token_in: Holder = "body"


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str | None = None  # absent when it went into the cookie
    token_type: str = "bearer"
    expires_in: int
    user: dict[str, Any]
    features: dict[str, bool] = Field(default_factory=dict)


def features(ctx: AppContext, user: dict[str, Any]) -> dict[str, bool]:
    """What this server offers this user, so a client shows only what will work for it."""
    return {"sandbox": ctx.settings.sandbox_on and user.get("role") == "admin"}


def _answer(ctx: AppContext, issued: login.Issued, holder: Holder, response: Response) -> TokensOut:
    user = user_public(issued.user)
    body = TokensOut(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        user=user,
        features=features(ctx, user),
    )
    if holder == "body":
        body.refresh_token = issued.refresh_token
        return body
    response.set_cookie(
        REFRESH_COOKIE,
        issued.refresh_token,
        max_age=ctx.settings.jwt_refresh_ttl_secs,
        path=COOKIE_PATH,
        httponly=True,
        secure=ctx.settings.refresh_cookie_secure,
        samesite="strict",
    )
    return body


def _forget_cookie(ctx: AppContext, response: Response) -> None:
    response.delete_cookie(
        REFRESH_COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        secure=ctx.settings.refresh_cookie_secure,
        samesite="strict",
    )


@router.post("/login", response_model_exclude_none=True)
async def login_route(
    body: LoginIn, request: Request, response: Response, ctx: CtxDep
) -> TokensOut:
    """Exchange e-mail and password for an access and a refresh token (throttled: too many
    failures for an account or from an address answer 429 with `retry_after`)."""
    issued = await login.login(ctx, email=body.email, password=body.password, ip=client_ip(request))
    return _answer(ctx, issued, body.refresh_token_in, response)


@router.post("/refresh", response_model=TokensOut, response_model_exclude_none=True)
async def refresh(
    request: Request, response: Response, ctx: CtxDep, body: RefreshIn | None = None
) -> TokensOut | JSONResponse:
    """Use a refresh token up (from the body, else the cookie) for a new pair. A token used
    twice ends every session of its user."""
    if body is not None and body.refresh_token:
        return _answer(ctx, await login.refresh(ctx, body.refresh_token), "body", response)
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise Unauthorized("Missing refresh token")
    # SameSite=Strict already keeps other sites' requests from carrying the cookie; a foreign
    # Origin is refused as well, for browsers that do not honour it.
    if not origin_allowed(ctx.settings, request):
        raise Forbidden("Origin not allowed")
    try:
        issued = await login.refresh(ctx, token)
    except Unauthorized as exc:
        # The refusal itself drops the dead cookie, so the browser stops presenting it.
        refused = JSONResponse(exc.to_dict(), status_code=exc.http_status)
        _forget_cookie(ctx, refused)
        return refused
    return _answer(ctx, issued, "cookie", response)


@router.post("/logout")
async def logout(principal: CurrentPrincipal, response: Response, ctx: CtxDep) -> dict[str, bool]:
    """End every session of the caller: its tokens stop working and its sockets close."""
    await login.logout(ctx, principal.user_id, principal.tenant_id)
    _forget_cookie(ctx, response)
    return {"ok": True}


@router.post("/password", response_model_exclude_none=True)
async def change_password(
    body: PasswordIn,
    principal: CurrentPrincipal,
    request: Request,
    response: Response,
    ctx: CtxDep,
) -> TokensOut:
    """Change the caller's password. Every other session ends; this one gets a new pair."""
    issued = await login.change_password(
        ctx,
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        current=body.current_password,
        new=body.new_password,
        ip=client_ip(request),
    )
    return _answer(ctx, issued, body.refresh_token_in, response)


@router.get("/me")
async def me(principal: CurrentPrincipal, ctx: CtxDep) -> dict[str, Any]:
    """The logged-in user, and the features it may use (`features.sandbox`: the simulator)."""
    user = user_public(await accounts.get_user(ctx, principal.user_id))
    return {**user, "features": features(ctx, user)}
