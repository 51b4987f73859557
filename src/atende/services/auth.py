"""Passwords (argon2) and JWTs (HS256) with the claims of SPEC §6."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from atende.config import Settings
from atende.db.types import utcnow
from atende.errors import Unauthorized
from atende.types import Role

_hasher = PasswordHasher()
JWT_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    """Who is calling: taken from a verified token, never from the request body."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def mint_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    role: str,
    kind: str = "access",
    ttl_secs: int | None = None,
) -> str:
    if ttl_secs is None:
        ttl_secs = (
            settings.jwt_access_ttl_secs if kind == "access" else settings.jwt_refresh_ttl_secs
        )
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "tenant_id": str(tenant_id),
        "organization_id": str(tenant_id),  # seed 002 calls the tenant an organization
        "role": role,
        "type": kind,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_secs)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=JWT_ALGORITHM)


def decode_token(settings: Settings, token: str, *, kind: str = "access") -> Principal:
    """Verify signature and expiry; raise Unauthorized with a reason a client can show."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("Invalid token") from exc
    if claims.get("type", "access") != kind:
        raise Unauthorized(f"Not an {kind} token")
    tenant = claims.get("tenant_id") or claims.get("organization_id")
    try:
        return Principal(
            user_id=uuid.UUID(str(claims["sub"])),
            tenant_id=uuid.UUID(str(tenant)),
            role=Role(claims.get("role", "agent")),
        )
    except (ValueError, TypeError) as exc:
        raise Unauthorized("Invalid token claims") from exc
