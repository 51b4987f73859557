"""The one way state changes: a tenant transaction that records events, publishes after commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from atende.context import AppContext
from atende.db.types import utcnow
from atende.events import log as event_log
from atende.events.model import Event

logger = logging.getLogger(__name__)
T = TypeVar("T")
TX_RETRIES = 4  # unique-key races (two first messages of a new contact) settle on a retry


class TenantTx:
    """A database session inside one transaction, bound to one tenant, collecting events."""

    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.events: list[Event] = []
        self._last_id: int | None = None

    async def lock(self) -> None:
        if self._last_id is None:
            self._last_id = await event_log.lock_tenant_counter(self.session, self.tenant_id)

    async def emit(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        conversation_id: uuid.UUID | None = None,
        visible_to: uuid.UUID | None = None,
    ) -> Event:
        await self.lock()
        assert self._last_id is not None
        self._last_id += 1
        event = Event(
            tenant_id=self.tenant_id,
            id=self._last_id,
            type=type_,
            data=data,
            created_at=utcnow(),
            conversation_id=conversation_id,
            visible_to=visible_to,
        )
        self.events.append(event)
        return event

    async def finish(self) -> None:
        if self.events and self._last_id is not None:
            await self.session.flush()
            await event_log.store_events(self.session, self.events)
            await event_log.store_counter(self.session, self.tenant_id, self._last_id)


@asynccontextmanager
async def tenant_tx(ctx: AppContext, tenant_id: uuid.UUID) -> AsyncIterator[TenantTx]:
    """Open a transaction that takes the tenant's event counter first (see events.log)."""
    async with ctx.write_gate or nullcontext(), ctx.sessionmaker() as session:
        tx = TenantTx(session, tenant_id)
        async with session.begin():
            await tx.lock()
            yield tx
            await tx.finish()
    for event in tx.events:
        await ctx.publish(event)


async def run_tenant_tx(
    ctx: AppContext, tenant_id: uuid.UUID, work: Callable[[TenantTx], Awaitable[T]]
) -> T:
    """Run `work` in a tenant transaction, retrying when a concurrent writer won a unique race."""
    for attempt in range(TX_RETRIES):
        try:
            async with tenant_tx(ctx, tenant_id) as tx:
                return await work(tx)
        except (IntegrityError, OperationalError) as exc:
            if attempt == TX_RETRIES - 1 or not _retryable(exc):
                raise
            logger.info("retrying tenant %s transaction after %s", tenant_id, type(exc).__name__)
    raise AssertionError("unreachable")


def _retryable(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, IntegrityError) or "deadlock" in text or "locked" in text
