"""Gateway webhooks: verify → parse → dedupe → services. Answer fast; lose nothing accepted."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select

from atende.context import AppContext
from atende.db.models import WhatsAppSession
from atende.errors import AtendeError, InvalidInput, NotFound, Unauthorized
from atende.providers import detect_provider
from atende.providers.base import (
    ConnectionUpdate,
    InboundMessage,
    MalformedPayload,
    Provider,
    StatusUpdate,
    WebhookAuthError,
    WebhookItem,
)
from atende.sanitize import without_nul
from atende.services import messages as messages_svc
from atende.services import sessions as sessions_svc

logger = logging.getLogger(__name__)


class InvalidPayload(InvalidInput):
    error_code = "INVALID_PAYLOAD"


class RetryLater(AtendeError):
    """503: the gateway should deliver this webhook again (every gateway retries on 5xx)."""

    error_code = "WEBHOOK_RETRY_LATER"
    http_status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class WebhookOutcome:
    stored: int = 0
    duplicates: int = 0
    statuses: int = 0
    connection: int = 0
    ignored: int = 0
    early: int = 0  # acks for an id we may not have stored yet (send in flight)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, **self.__dict__}


def decode_json(raw_body: bytes) -> Any:
    try:
        payload = orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload("Body is not valid JSON") from exc
    # PostgreSQL text can not hold U+0000: a message carrying one failed to store with a 500,
    # which the gateway retried forever. The character means nothing in a chat; drop it.
    # (Signatures are checked on the raw bytes, so this does not affect them.)
    return without_nul(payload) if b"\\u0000" in raw_body else payload


def detect(ctx: AppContext, payload: Any) -> Provider:
    provider = detect_provider(payload)
    if provider is None:
        raise InvalidPayload("Body is not of any supported provider's webhook shape")
    return ctx.provider(provider.name.value)


async def handle(
    ctx: AppContext, provider: Provider, raw_body: bytes, headers: Mapping[str, str]
) -> WebhookOutcome:
    payload = decode_json(raw_body)
    sessions = await _sessions_for(ctx, provider, payload)
    for row in sessions.values():
        try:
            provider.verify(sessions_svc.config_of(row), raw_body, headers)
        except WebhookAuthError as exc:
            raise Unauthorized(f"Webhook credentials rejected: {exc.reason}") from exc
    try:
        items = provider.parse(payload)
    except MalformedPayload as exc:
        raise InvalidPayload(f"Malformed {provider.name.value} webhook: {exc.reason}") from exc
    outcome = WebhookOutcome()
    for item in items:
        found = sessions.get(item.session_name)
        if found is None:
            outcome.ignored += 1
            continue
        await _apply(ctx, found, item, outcome)
    if outcome.early:
        # Everything else in the body is stored (redelivery dedupes it); the acks that overtook
        # the outbox's storing of the gateway's id must come again, not be dropped.
        raise RetryLater(
            "Status for a message whose send is still being recorded; deliver again",
            retry_after=1,
        )
    return outcome


async def _sessions_for(
    ctx: AppContext, provider: Provider, payload: Any
) -> dict[str, WhatsAppSession]:
    try:
        names = provider.session_names(payload)
    except MalformedPayload as exc:
        raise InvalidPayload(f"Malformed {provider.name.value} webhook: {exc.reason}") from exc
    found: dict[str, WhatsAppSession] = {}
    for name in dict.fromkeys(names):
        row = await sessions_svc.find_for_webhook(ctx, provider.name.value, name)
        if row is None:
            raise NotFound(
                f"Unknown {provider.name.value} session", details={"session": str(name)[:100]}
            )
        found[name] = row
    return found


async def _apply(
    ctx: AppContext, row: WhatsAppSession, item: WebhookItem, outcome: WebhookOutcome
) -> None:
    if isinstance(item, InboundMessage):
        result = await messages_svc.ingest_inbound(ctx, row, item)
        if result.created:
            outcome.stored += 1
            logger.info("[WS] New message received: %s, session: %s", result.message_id, row.name)
        else:
            outcome.duplicates += 1
    elif isinstance(item, StatusUpdate):
        acked = await messages_svc.apply_status(
            ctx,
            session_row=row,
            wamid=item.provider_message_id,
            status=item.status,
            error=item.error,
        )
        if acked == messages_svc.StatusOutcome.MOVED:
            outcome.statuses += 1
        elif acked == messages_svc.StatusOutcome.EARLY:
            outcome.early += 1
        else:
            outcome.ignored += 1
    elif isinstance(item, ConnectionUpdate):
        await sessions_svc.set_state(
            ctx, row.id, state=item.state, qr=item.qr, error=item.error, phone=item.phone
        )
        outcome.connection += 1


async def cloud_verify_token_known(ctx: AppContext, token: str) -> bool:
    """Whether any Cloud API session was configured with this verify token."""
    async with ctx.reader() as session:
        rows = (
            await session.execute(
                select(WhatsAppSession).where(WhatsAppSession.provider == "cloud")
            )
        ).scalars()
        expected = [str((r.options or {}).get("verify_token") or "") for r in rows]
    return any(e and hmac.compare_digest(e.encode(), token.encode()) for e in expected)
