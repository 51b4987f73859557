"""The sending worker: pending messages → gateway, with retries, backoff and resume after restart.

Claiming is a lease: a claimed message gets `next_attempt_at = now + lease`, committed before the
gateway is called, so another instance (PostgreSQL, `FOR UPDATE SKIP LOCKED`) or a restarted one
picks it up only if this attempt never finished. A process killed after the gateway accepted a
message but before we stored its id will send it again on resume: gateways offer no idempotency
key, so at-least-once is the best any client can do there. A graceful shutdown hands the
messages it was sending back at once (their attempt not counted) instead of waiting out the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import select

from atende import metrics
from atende.context import AppContext
from atende.db.models import Contact, Conversation, Message, WhatsAppSession
from atende.db.types import utcnow
from atende.providers.base import (
    GatewayRejected,
    GatewayUnavailable,
    OutboundMessage,
    ProviderError,
    SessionConfig,
)
from atende.providers.http import with_default_timeout
from atende.services import messages as messages_svc
from atende.services.sessions import config_of
from atende.types import Direction, MessageStatus, MessageType

logger = logging.getLogger(__name__)

CLAIM_BATCH = 20
IDLE_POLL_SECS = 5.0  # re-check for due retries even when nobody wakes us
LEASE_MARGIN_SECS = 10.0  # a claim outlives the gateway timeout by this much


@dataclass(frozen=True)
class Claimed:
    message_id: uuid.UUID
    tenant_id: uuid.UUID
    attempts: int
    session: SessionConfig
    outbound: OutboundMessage
    contact_id: uuid.UUID


class Outbox:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.lease = timedelta(seconds=ctx.settings.gateway_timeout_secs + LEASE_MARGIN_SECS)

    async def run(self) -> None:
        while True:
            try:
                claimed = await self.claim()
                metrics.OUTBOX_DEPTH.set(len(claimed))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("outbox claim failed; retrying")
                claimed = []
            if claimed:
                await asyncio.gather(*(self.deliver(c) for c in claimed))
                continue
            await self._wait()

    async def _wait(self) -> None:
        wakeup = self.ctx.outbox_wakeup
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout=await self._next_due_in())
        wakeup.clear()

    async def _next_due_in(self) -> float:
        async with self.ctx.reader() as session:
            stmt = (
                select(Message.next_attempt_at)
                .where(Message.status == MessageStatus.PENDING.value)
                .where(Message.next_attempt_at.is_not(None))
                .order_by(Message.next_attempt_at)
                .limit(1)
            )
            due = (await session.execute(stmt)).scalar_one_or_none()
        if due is None:
            return IDLE_POLL_SECS
        return min(IDLE_POLL_SECS, max(0.01, (due - utcnow()).total_seconds()))

    async def claim(self) -> list[Claimed]:
        now = utcnow()
        async with self.ctx.sessionmaker() as session, session.begin():
            stmt = (
                select(Message, WhatsAppSession, Contact)
                .join(WhatsAppSession, WhatsAppSession.id == Message.session_id)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .join(Contact, Contact.id == Conversation.contact_id)
                .where(
                    Message.status == MessageStatus.PENDING.value,
                    Message.direction == Direction.OUTBOUND.value,
                    Message.next_attempt_at <= now,
                )
                .order_by(Message.next_attempt_at, Message.created_at)
                .limit(CLAIM_BATCH)
                .with_for_update(skip_locked=True, of=Message)
            )
            rows = (await session.execute(stmt)).all()
            claimed = []
            for msg, sess, contact in rows:
                msg.attempts += 1
                msg.next_attempt_at = now + self.lease
                claimed.append(_claimed(msg, sess, contact, self.ctx))
        return claimed

    async def deliver(self, claimed: Claimed) -> None:
        try:
            await self._deliver(claimed)
        except asyncio.CancelledError:
            # Shutting down mid-send: hand the message back now rather than when the lease
            # runs out, so the next start (or another instance) sends it without waiting.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(claimed))
            raise
        except Exception:
            # Storing the outcome failed (database down...): the worker must survive; the
            # claim's lease runs out and the message is tried again.
            logger.exception("outbox: recording the outcome of %s failed", claimed.message_id)

    async def _release(self, claimed: Claimed) -> None:
        async with self.ctx.sessionmaker() as session, session.begin():
            msg = await session.get(Message, claimed.message_id)
            # (A message whose gateway id an echo already brought keeps its lease.)
            if (
                msg is not None
                and msg.status == MessageStatus.PENDING.value
                and msg.whatsapp_message_id is None
            ):
                msg.attempts = max(0, msg.attempts - 1)  # the attempt never finished
                msg.next_attempt_at = utcnow()

    async def _deliver(self, claimed: Claimed) -> None:
        provider = self.ctx.provider(claimed.session.provider.value)
        http = self.ctx.http
        try:
            outbound = claimed.outbound
            if outbound.to_jid is None:
                jid = await provider.check_number(http, claimed.session, outbound.phone)
                if jid is None:
                    raise GatewayRejected("Number is not on WhatsApp")
                outbound = _with_jid(outbound, jid)
            with metrics.timed(metrics.SEND_LATENCY, claimed.session.provider.value):
                result = await provider.send(http, claimed.session, outbound)
        except GatewayRejected as exc:
            await self._fail(claimed, exc.reason)
        except (GatewayUnavailable, ProviderError) as exc:
            await self._retry_or_fail(claimed, exc.reason)
        except Exception as exc:  # a provider bug must not kill the worker
            logger.exception("outbox: unexpected error sending %s", claimed.message_id)
            await self._retry_or_fail(claimed, f"internal error: {type(exc).__name__}")
        else:
            await messages_svc.mark_sent(
                self.ctx,
                tenant_id=claimed.tenant_id,
                message_id=claimed.message_id,
                wamid=result.provider_message_id,
                jid=result.jid or outbound.to_jid,
            )
            logger.info("[WS] Message sent: %s", claimed.message_id)

    async def _fail(self, claimed: Claimed, reason: str) -> None:
        metrics.SEND_FAILURES.inc()
        logger.warning("[ERROR] Send failed: %s (%s)", claimed.message_id, reason)
        await messages_svc.mark_failed(
            self.ctx, tenant_id=claimed.tenant_id, message_id=claimed.message_id, reason=reason
        )

    async def _retry_or_fail(self, claimed: Claimed, reason: str) -> None:
        settings = self.ctx.settings
        if claimed.attempts >= settings.outbox_max_attempts:
            await self._fail(claimed, f"gave up after {claimed.attempts} attempts: {reason}")
            return
        delay = min(
            settings.outbox_backoff_max_secs,
            settings.outbox_backoff_base_secs * (2 ** (claimed.attempts - 1)),
        )
        logger.info(
            "outbox: %s attempt %s failed (%s); retry in %.1fs",
            claimed.message_id,
            claimed.attempts,
            reason,
            delay,
        )
        async with self.ctx.sessionmaker() as session, session.begin():
            msg = await session.get(Message, claimed.message_id)
            if msg is not None and msg.status == MessageStatus.PENDING.value:
                msg.next_attempt_at = utcnow() + timedelta(seconds=delay)
                msg.error = reason[:1000]


def _claimed(msg: Message, sess: WhatsAppSession, contact: Contact, ctx: AppContext) -> Claimed:
    media = msg.media or {}
    return Claimed(
        message_id=msg.id,
        tenant_id=msg.tenant_id,
        attempts=msg.attempts,
        session=with_default_timeout(config_of(sess, ctx), ctx.settings.gateway_timeout_secs),
        contact_id=contact.id,
        outbound=OutboundMessage(
            to_jid=msg.to_jid or contact.wa_jid,
            phone=contact.phone,
            message_type=MessageType(msg.message_type),
            text=msg.text,
            media_url=media.get("url"),
            mimetype=media.get("mimetype"),
            filename=media.get("filename"),
            caption=media.get("caption"),
        ),
    )


def _with_jid(outbound: OutboundMessage, jid: str) -> OutboundMessage:
    return replace(outbound, to_jid=jid)
