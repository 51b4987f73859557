"""Admin changes to a tenant's users (the list is `GET /api/v1/users`)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from atende.api.deps import AdminPrincipal, CtxDep
from atende.services import accounts
from atende.services.render import user_public
from atende.types import Role

router = APIRouter(prefix="/api/v1/users", tags=["users"])


class UserPatch(BaseModel):
    role: Role | None = None
    is_active: bool | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)


@router.patch("/{user_id}")
async def update_user(
    user_id: uuid.UUID, body: UserPatch, principal: AdminPrincipal, ctx: CtxDep
) -> dict[str, Any]:
    """Change a user's role, name or whether it may log in. A new role or disabling ends the
    user's sessions at once: its tokens stop working and its open sockets close (4401)."""
    user = await accounts.update_user(
        ctx, principal, user_id, role=body.role, is_active=body.is_active, name=body.name
    )
    return user_public(user)
