"""Gateway webhooks: verify → parse → dedupe → services. Answer fast; lose nothing accepted."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from atende.context import AppContext
from atende.db.models import WhatsAppSession
from atende.errors import (
    AtendeError,
    InvalidInput,
    SessionAmbiguous,
    Unauthorized,
    WebhookExpired,
)
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
Headers = Mapping[str, str]


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


REJECTED = "Webhook credentials rejected"  # one answer for every refusal: no existence oracle


def rejected(provider: Provider, reason: str) -> Unauthorized:
    # Unknown session, unknown token, wrong key and wrong signature all answer exactly this,
    # so that a stranger learns nothing about which sessions exist. The reason is logged.
    logger.info("%s webhook refused: %s", provider.name.value, reason)
    return Unauthorized(REJECTED)


def _passes(provider: Provider, row: WhatsAppSession, raw: bytes, headers: Headers) -> bool:
    try:
        provider.verify(sessions_svc.config_of(row), raw, headers)
    except WebhookAuthError:
        return False
    return True


async def handle(
    ctx: AppContext,
    provider: Provider,
    raw_body: bytes,
    headers: Headers,
    *,
    token: str | None = None,
) -> WebhookOutcome:
    """One delivery. With `token` (the session's own URL) the credentials are checked on the
    raw bytes before anything is parsed; a name-addressed delivery must be parsed first to
    find the names, then each name's credentials pick its session."""
    if token is not None:
        row = await sessions_svc.find_for_token(ctx, provider.name.value, token)
        if row is None or not _passes(provider, row, raw_body, headers):
            raise rejected(provider, "unknown token" if row is None else "wrong credentials")
        payload = decode_json(raw_body)
        sessions = await _tenant_sessions(ctx, provider, payload, raw_body, headers, row)
    else:
        payload = decode_json(raw_body)
        sessions = await _sessions_by_name(ctx, provider, payload, raw_body, headers)
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


def _names(provider: Provider, payload: Any) -> list[str]:
    try:
        return list(dict.fromkeys(provider.session_names(payload)))
    except MalformedPayload as exc:
        raise InvalidPayload(f"Malformed {provider.name.value} webhook: {exc.reason}") from exc


async def _sessions_by_name(
    ctx: AppContext, provider: Provider, payload: Any, raw: bytes, headers: Headers
) -> dict[str, WhatsAppSession]:
    """Each name's session: of the sessions so named (one per tenant at most), the one whose
    credentials the request carries. None passing is the same refusal as an unknown name."""
    found: dict[str, WhatsAppSession] = {}
    for name in _names(provider, payload):
        rows = await sessions_svc.candidates_for_webhook(ctx, provider.name.value, name)
        passing = [row for row in rows if _passes(provider, row, raw, headers)]
        if not passing:
            raise rejected(provider, "unknown name" if not rows else "wrong credentials")
        if len(passing) > 1:
            raise SessionAmbiguous(
                f"More than one {provider.name.value} session answers to this name: "
                "use the session's own webhook URL"
            )
        found[name] = passing[0]
    return found


async def _tenant_sessions(
    ctx: AppContext,
    provider: Provider,
    payload: Any,
    raw: bytes,
    headers: Headers,
    row: WhatsAppSession,
) -> dict[str, WhatsAppSession]:
    """On a session's own URL: that session, plus any other of the same tenant the body
    names (one Meta app posts every number's events to each of its callback URLs), each with
    its own credentials. Names of other tenants are not looked up: their items are ignored."""
    found = {row.name: row}
    for name in _names(provider, payload):
        if name in found:
            continue
        other = await sessions_svc.find_in_tenant(ctx, row.tenant_id, provider.name.value, name)
        if other is not None and _passes(provider, other, raw, headers):
            found[name] = other
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
        _check_window(ctx, item)
        applied = await sessions_svc.apply_state(
            ctx,
            row.id,
            state=item.state,
            qr=item.qr,
            error=item.error,
            phone=item.phone,
            event_id=item.event_id,
        )
        if applied is None:
            outcome.duplicates += 1
        else:
            outcome.connection += 1


def _check_window(ctx: AppContext, item: ConnectionUpdate) -> None:
    """A state event is only as good as it is recent: an old signed `STOPPED` replayed would
    disconnect a working session. (Messages and acks are not refused: a late one is still
    true, and they are idempotent and forward-only anyway.)"""
    if item.signed_at is None:
        return
    window = ctx.settings.webhook_timestamp_window_secs
    skew = abs((datetime.now(UTC) - item.signed_at).total_seconds())
    if skew > window:
        raise WebhookExpired(
            f"Signed state event is {int(skew)} s away from now (window {window} s): refused",
            details={"window_secs": window},
        )


async def cloud_verify_token_known(ctx: AppContext, token: str) -> bool:
    """Whether any Cloud API session was configured with this verify token."""
    async with ctx.reader() as session:
        stmt = select(WhatsAppSession.options).where(WhatsAppSession.provider == "cloud")
        rows = (await session.execute(stmt)).scalars()  # not the (encrypted) secrets
        expected = [str((options or {}).get("verify_token") or "") for options in rows]
    return any(e and hmac.compare_digest(e.encode(), token.encode()) for e in expected)
