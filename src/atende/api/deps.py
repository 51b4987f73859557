"""Request dependencies: the app context and the authenticated, tenant-scoped caller."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from atende.context import AppContext
from atende.errors import Forbidden, Unauthorized
from atende.services.auth import Principal, decode_token


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise Unauthorized("Missing bearer token")
    return decode_token(get_ctx(request).settings, header[7:].strip())


def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("Administrators only")
    return principal


CtxDep = Annotated[AppContext, Depends(get_ctx)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def same_tenant(principal: Principal, tenant_id: uuid.UUID) -> None:
    """A token of tenant X on tenant Y's path is 403."""
    if principal.tenant_id != tenant_id:
        raise Forbidden("You do not have access to this tenant")
