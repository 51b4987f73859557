"""Whether a verified token still speaks for its user: one check for REST and every socket.

The user's row decides, at the moment of the request: a disabled user, a changed role, or a
`token_version` bumped by logout, password change, disabling or demotion makes every token
minted before worthless at once, without waiting for it to expire.
"""

from __future__ import annotations

from sqlalchemy import select

from atende.context import AppContext
from atende.db.models import User
from atende.errors import Unauthorized
from atende.services.auth import Principal, decode_token

SESSION_ENDED = "Session ended; log in again"


async def authorize(ctx: AppContext, token: str, *, kind: str = "access") -> Principal:
    """The principal of a token whose signature and claims hold and whose user allows it now."""
    principal = decode_token(ctx.settings, token, kind=kind)
    await ensure_current(ctx, principal)
    return principal


async def ensure_current(ctx: AppContext, principal: Principal) -> None:
    stmt = select(User.tenant_id, User.role, User.is_active, User.token_version).where(
        User.id == principal.user_id
    )
    async with ctx.reader() as session:
        row = (await session.execute(stmt)).first()
    if row is None or not row.is_active:
        raise Unauthorized("This user no longer exists or was disabled")
    if (row.tenant_id, row.role, row.token_version) != (
        principal.tenant_id,
        principal.role.value,
        principal.token_version,
    ):
        raise Unauthorized(SESSION_ENDED)
