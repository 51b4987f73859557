"""The replay log: events written in the same transaction as the change they describe."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from atende.db.models import Event as EventRow
from atende.db.models import Tenant, WebhookEvent
from atende.db.types import utcnow
from atende.events.model import Event

REPLAY_BATCH = 500  # events read per query while replaying


def _to_event(row: EventRow) -> Event:
    return Event(
        tenant_id=row.tenant_id,
        id=row.id,
        type=row.type,
        data=row.data,
        created_at=row.created_at,
        conversation_id=row.conversation_id,
        visible_to=row.visible_to,
    )


async def lock_tenant_counter(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Take the tenant's counter row for this transaction and return its current value.

    On PostgreSQL `FOR UPDATE` makes every writer of one tenant wait for the previous one to
    commit, so commit order equals event-id order and ids have no holes. SQLite already has a
    single writer (BEGIN IMMEDIATE).
    """
    stmt = select(Tenant.last_event_id).where(Tenant.id == tenant_id).with_for_update()
    value = (await session.execute(stmt)).scalar_one_or_none()
    if value is None:
        raise LookupError(f"tenant {tenant_id} does not exist")
    return int(value)


async def store_counter(session: AsyncSession, tenant_id: uuid.UUID, last_id: int) -> None:
    await session.execute(
        update(Tenant).where(Tenant.id == tenant_id).values(last_event_id=last_id)
    )


async def store_events(session: AsyncSession, events: list[Event]) -> None:
    """Insert a transaction's events in one Core executemany: cheaper than an ORM object per
    event, and nothing reads them back inside the transaction."""
    rows = [
        {
            "tenant_id": e.tenant_id,
            "id": e.id,
            "type": e.type,
            "data": e.data,
            "conversation_id": e.conversation_id,
            "visible_to": e.visible_to,
            "created_at": e.created_at,
        }
        for e in events
    ]
    await session.execute(insert(EventRow), rows)


async def read_range(
    session: AsyncSession, tenant_id: uuid.UUID, after: int, up_to: int | None = None
) -> list[Event]:
    """Events with after < id (<= up_to), oldest first, at most REPLAY_BATCH of them."""
    stmt = select(EventRow).where(EventRow.tenant_id == tenant_id, EventRow.id > after)
    if up_to is not None:
        stmt = stmt.where(EventRow.id <= up_to)
    stmt = stmt.order_by(EventRow.id).limit(REPLAY_BATCH)
    return [_to_event(row) for row in (await session.execute(stmt)).scalars()]


async def counters(session: AsyncSession, tenant_id: uuid.UUID) -> tuple[int, int]:
    """(last_event_id, events_pruned_through) of a tenant."""
    stmt = select(Tenant.last_event_id, Tenant.events_pruned_through).where(Tenant.id == tenant_id)
    row = (await session.execute(stmt)).one()
    return int(row[0]), int(row[1])


async def prune(session: AsyncSession, older_than: timedelta) -> int:
    """Delete events past the retention window; remember per tenant how far we pruned."""
    cutoff: datetime = utcnow() - older_than
    per_tenant = (
        select(EventRow.tenant_id, func.max(EventRow.id))
        .where(EventRow.created_at < cutoff)
        .group_by(EventRow.tenant_id)
    )
    rows = (await session.execute(per_tenant)).all()
    for tenant_id, max_id in rows:
        await session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id, Tenant.events_pruned_through < max_id)
            .values(events_pruned_through=max_id)
        )
    # Provider event ids are kept as long as events: far past any signed-timestamp window.
    await session.execute(delete(WebhookEvent).where(WebhookEvent.created_at < cutoff))
    result = await session.execute(delete(EventRow).where(EventRow.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
