"""The sending worker: pending messages → gateway, with retries, backoff and resume after restart.

Claiming is a lease: a claimed message gets `next_attempt_at = now + lease`, committed before the
gateway is called, so another instance (PostgreSQL, `FOR UPDATE SKIP LOCKED`) or a restarted one
picks it up only if this attempt never finished. A graceful shutdown hands the messages it was
sending back at once (their attempt not counted) instead of waiting out the lease.

Gateways take no idempotency key, so a timeout (or a crash) after the gateway accepted a message
is ambiguous: resending may send it twice. What settles it is the gateway's own word: its echo of
the sent message (Evolution `send.message`, WAHA `message.any`) stores the gateway's id on our
pending row (`services.messages._match_echo`). A pending message holding that id was sent, so it
is marked sent instead of being sent again (`_known_gateway_id`). Only a resend that goes out
before any such word arrived duplicates the message: at-least-once is the floor there.
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
    known_wamid: str | None = None  # the gateway already said it sent this one (see above)


class Outbox:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.lease = timedelta(seconds=ctx.settings.gateway_timeout_secs + LEASE_MARGIN_SECS)

    async def run(self) -> None:
        # Up to CLAIM_BATCH sends in flight, each finishing on its own: a batch awaited as a
        # whole held every message in it back until the slowest gateway call timed out.
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                room = CLAIM_BATCH - len(in_flight)
                claimed = await self._claim_safely(room) if room > 0 else []
                for c in claimed:
                    self._start(c, in_flight)
                metrics.OUTBOX_DEPTH.set(len(in_flight))
                if claimed and len(claimed) == room:
                    continue  # full claim: more may be due now
                await self._wait()
        finally:
            for task in in_flight:
                task.cancel()  # `deliver` hands its message back
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _claim_safely(self, limit: int) -> list[Claimed]:
        try:
            return await self.claim(limit)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("outbox claim failed; retrying")
            return []

    def _start(self, claimed: Claimed, in_flight: set[asyncio.Task[None]]) -> None:
        task = asyncio.create_task(self.deliver(claimed), name=f"outbox-{claimed.message_id}")
        in_flight.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            in_flight.discard(finished)
            self.ctx.outbox_wakeup.set()  # room for another claim

        task.add_done_callback(done)

    async def _wait(self) -> None:
        wakeup = self.ctx.outbox_wakeup
        # The timeout first: cancelled while reading it (shutdown), a `wakeup.wait()` made
        # beforehand would be a coroutine never awaited.
        due_in = await self._next_due_in()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout=due_in)
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

    async def claim(self, limit: int = CLAIM_BATCH) -> list[Claimed]:
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
                .limit(limit)
                .with_for_update(skip_locked=True, of=Message)
            )
            rows = (await session.execute(stmt)).all()
            claimed = []
            for msg, sess, contact in rows:
                msg.attempts += 1
                msg.next_attempt_at = now + self.lease
                claimed.append(_claimed(msg, sess, contact, self.ctx, _known_gateway_id(msg)))
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
        if claimed.known_wamid is not None:
            # Its echo came while we waited to retry (or after a crash): it went out already.
            await self._already_sent(claimed, claimed.known_wamid)
            return
        provider = self.ctx.provider(claimed.session.provider.value)
        http = self.ctx.http
        sending = False
        try:
            outbound = claimed.outbound
            if outbound.to_jid is None:
                jid = await provider.check_number(http, claimed.session, outbound.phone)
                if jid is None:
                    raise GatewayRejected("Number is not on WhatsApp")
                outbound = _with_jid(outbound, jid)
            if claimed.attempts > 1 and (known := await self._known_now(claimed)) is not None:
                # The echo of an earlier attempt landed since the claim: look as late as we can.
                await self._already_sent(claimed, known)
                return
            sending = True
            with metrics.timed(metrics.SEND_LATENCY, claimed.session.provider.value):
                result = await provider.send(http, claimed.session, outbound)
        except GatewayRejected as exc:
            await self._fail(claimed, exc.reason)
        except GatewayUnavailable as exc:
            await self._retry_or_fail(claimed, exc.reason, sending and exc.maybe_delivered)
        except ProviderError as exc:
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

    async def _already_sent(self, claimed: Claimed, wamid: str) -> None:
        logger.info(
            "outbox: %s was sent by the gateway as %s; not resending", claimed.message_id, wamid
        )
        await messages_svc.mark_sent(
            self.ctx,
            tenant_id=claimed.tenant_id,
            message_id=claimed.message_id,
            wamid=wamid,
            jid=None,
        )

    async def _fail(self, claimed: Claimed, reason: str) -> None:
        metrics.SEND_FAILURES.inc()
        logger.warning("[ERROR] Send failed: %s (%s)", claimed.message_id, reason)
        await messages_svc.mark_failed(
            self.ctx, tenant_id=claimed.tenant_id, message_id=claimed.message_id, reason=reason
        )

    async def _known_now(self, claimed: Claimed) -> str | None:
        async with self.ctx.reader() as session:
            msg = await session.get(Message, claimed.message_id)
            return None if msg is None else _known_gateway_id(msg)

    async def _retry_or_fail(self, claimed: Claimed, reason: str, maybe_sent: bool = False) -> None:
        if (known := await self._known_now(claimed)) is not None:
            # A timeout, but the gateway's echo says the send went through: resending (or
            # giving up) would be wrong.
            await self._already_sent(claimed, known)
            return
        settings = self.ctx.settings
        if claimed.attempts >= settings.outbox_max_attempts:
            await self._fail(claimed, f"gave up after {claimed.attempts} attempts: {reason}")
            return
        delay = min(
            settings.outbox_backoff_max_secs,
            settings.outbox_backoff_base_secs * (2 ** (claimed.attempts - 1)),
        )
        if maybe_sent:
            # The gateway may have sent it and not answered: give its echo as long to arrive
            # as we waited for the answer before sending again.
            delay = max(delay, settings.gateway_timeout_secs)
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


def _known_gateway_id(msg: Message) -> str | None:
    """The gateway id an echo stored on this still-pending message: proof the gateway sent it.

    `services.messages._match_echo` pins an echo on a pending row only when no other pending
    row of the conversation has the same text, so a pinned id is never a guess.
    """
    if msg.status != MessageStatus.PENDING.value:
        return None
    return msg.whatsapp_message_id


def _claimed(
    msg: Message,
    sess: WhatsAppSession,
    contact: Contact,
    ctx: AppContext,
    known_wamid: str | None = None,
) -> Claimed:
    media = msg.media or {}
    return Claimed(
        known_wamid=known_wamid,
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
