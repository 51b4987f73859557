"""JWTs (HS256) with the claims of SPEC §6, and who a verified token speaks for right now.

A token is proof of a signature, not of a right: `authorize` checks it against the user's
current row on every request and socket (disabled, demoted or logged-out users are refused at
once), through the `ver` claim that every change of access bumps (`User.token_version`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from atende.config import Settings
from atende.db.types import utcnow
from atende.errors import Unauthorized
from atende.types import Role

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "sub", "iss", "aud", "iat"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: taken from a verified token, never from the request body."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    token_version: int = 0
    expires_at: int | None = None  # the token's `exp` (Unix seconds): sockets close then

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


@dataclass(frozen=True)
class Minted:
    token: str
    jti: str
    expires_at: int


def mint(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    role: str,
    kind: str = "access",
    ttl_secs: int | None = None,
    version: int = 0,
    family_id: uuid.UUID | None = None,
) -> Minted:
    if ttl_secs is None:
        ttl_secs = (
            settings.jwt_access_ttl_secs if kind == "access" else settings.jwt_refresh_ttl_secs
        )
    now = utcnow()
    jti = uuid.uuid4().hex
    expires_at = int((now + timedelta(seconds=ttl_secs)).timestamp())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "tenant_id": str(tenant_id),
        "organization_id": str(tenant_id),  # seed 002 calls the tenant an organization
        "role": role,
        "type": kind,
        "ver": version,
        "iat": int(now.timestamp()),
        "exp": expires_at,
        "jti": jti,
    }
    if family_id is not None:
        claims["fam"] = str(family_id)
    return Minted(jwt.encode(claims, settings.jwt_secret, algorithm=JWT_ALGORITHM), jti, expires_at)


def mint_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    role: str,
    kind: str = "access",
    ttl_secs: int | None = None,
    version: int = 0,
) -> str:
    """An access token (scripts, tests, `atende token`); refresh tokens come from
    `services.sessions_auth`, which records them so they can rotate and be revoked."""
    return mint(
        settings,
        user_id=user_id,
        tenant_id=tenant_id,
        role=role,
        kind=kind,
        ttl_secs=ttl_secs,
        version=version,
    ).token


def decode_claims(settings: Settings, token: str, *, kind: str = "access") -> dict[str, Any]:
    """Verify signature, expiry, issuer and audience; raise Unauthorized with a reason a
    client can show."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[JWT_ALGORITHM],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("Invalid token") from exc
    if claims.get("type", "access") != kind:
        raise Unauthorized(f"Not an {kind} token")
    return claims


def decode_token(settings: Settings, token: str, *, kind: str = "access") -> Principal:
    """The principal a token claims to be (signature checked; the user's state is not:
    that is `services.access.authorize`)."""
    claims = decode_claims(settings, token, kind=kind)
    return principal_of(claims)


def principal_of(claims: dict[str, Any]) -> Principal:
    tenant = claims.get("tenant_id") or claims.get("organization_id")
    version = claims.get("ver", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise Unauthorized("Invalid token claims")
    try:
        return Principal(
            user_id=uuid.UUID(str(claims["sub"])),
            tenant_id=uuid.UUID(str(tenant)),
            role=Role(claims.get("role", "agent")),
            token_version=version,
            expires_at=int(claims["exp"]),
        )
    except (ValueError, TypeError) as exc:
        raise Unauthorized("Invalid token claims") from exc
