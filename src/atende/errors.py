"""The AtendeError tree: one handler renders each as JSON on REST and as a socket `error` event.

AtendeError (error_code, http_status, message, details)
 ├── InvalidInput            400 INVALID_INPUT
 │    ├── InvalidBaseUrl     400 INVALID_BASE_URL (not http(s), or with a query or fragment)
 │    ├── InvalidPhoneNumber 400 INVALID_PHONE_NUMBER
 │    ├── MessageTooLong     400 MESSAGE_TOO_LONG
 │    ├── SessionRequired    400 SESSION_REQUIRED (which WhatsApp number? details.choices)
 │    └── SessionMismatch    400 SESSION_MISMATCH (the conversation is on another number)
 ├── Unauthorized            401 UNAUTHORIZED
 │    └── WebhookExpired     401 WEBHOOK_EXPIRED (a signed state event outside the window)
 ├── Forbidden               403 FORBIDDEN
 ├── NotFound                404 NOT_FOUND
 ├── RequestTimeout          408 REQUEST_TIMEOUT (a body that arrived too slowly)
 ├── Conflict                409 CONFLICT
 ├── PayloadTooLarge         413 PAYLOAD_TOO_LARGE (details.max_bytes)
 ├── HeadersTooLarge         431 HEADERS_TOO_LARGE (details.max_bytes)
 │    └── SessionAmbiguous   409 SESSION_AMBIGUOUS (a name several tenants use: use the token URL)
 ├── MediaTooLarge           413 MEDIA_TOO_LARGE
 ├── RateLimitExceeded       429 RATE_LIMIT_EXCEEDED (retry_after)
 ├── MessageSendFailed       502 MESSAGE_SEND_FAILED
 ├── GatewayError            502 GATEWAY_ERROR
 │    └── GatewayAddressNotAllowed 502 GATEWAY_ADDRESS_NOT_ALLOWED (see atende.netguard)
 └── WhatsAppDisconnected    503 WHATSAPP_DISCONNECTED
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """The JSON body of every refused REST request, as the OpenAPI documents it."""

    error_code: str
    message: str
    details: dict[str, Any] | None = None
    retry_after: int | None = None


class AtendeError(Exception):
    error_code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error_code": self.error_code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def to_event(self) -> dict[str, Any]:
        return {"type": "error", **self.to_dict(), "timestamp": utc_iso(datetime.now(UTC))}


class InvalidInput(AtendeError):
    error_code = "INVALID_INPUT"
    http_status = 400


class InvalidPhoneNumber(InvalidInput):
    error_code = "INVALID_PHONE_NUMBER"


class MessageTooLong(InvalidInput):
    error_code = "MESSAGE_TOO_LONG"


class SessionRequired(InvalidInput):
    """A send that could leave through more than one of the tenant's WhatsApp numbers."""

    error_code = "SESSION_REQUIRED"


class SessionMismatch(InvalidInput):
    """A send that names a WhatsApp number other than the one its conversation belongs to."""

    error_code = "SESSION_MISMATCH"


class InvalidBaseUrl(InvalidInput):
    """A gateway base_url that is not plain http(s), or whose query or fragment would pick
    the path the gateway routes are appended to."""

    error_code = "INVALID_BASE_URL"


class Unauthorized(AtendeError):
    error_code = "UNAUTHORIZED"
    http_status = 401


class WebhookExpired(Unauthorized):
    """A signed state event whose signed timestamp is outside the window: a replay, or a
    delivery so late that applying it would undo newer state."""

    error_code = "WEBHOOK_EXPIRED"


class Forbidden(AtendeError):
    error_code = "FORBIDDEN"
    http_status = 403


class NotFound(AtendeError):
    error_code = "NOT_FOUND"
    http_status = 404


class Conflict(AtendeError):
    error_code = "CONFLICT"
    http_status = 409


class SessionAmbiguous(Conflict):
    """A session name that more than one session answers to; only its token URL can tell."""

    error_code = "SESSION_AMBIGUOUS"


class RequestTimeout(AtendeError):
    error_code = "REQUEST_TIMEOUT"
    http_status = 408


class PayloadTooLarge(AtendeError):
    error_code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class HeadersTooLarge(AtendeError):
    error_code = "HEADERS_TOO_LARGE"
    http_status = 431


class MediaTooLarge(AtendeError):
    """A media file larger than `settings.media_max_bytes`: not fetched, nothing kept."""

    error_code = "MEDIA_TOO_LARGE"
    http_status = 413


class RateLimitExceeded(AtendeError):
    error_code = "RATE_LIMIT_EXCEEDED"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after": self.retry_after}


class MessageSendFailed(AtendeError):
    error_code = "MESSAGE_SEND_FAILED"
    http_status = 502


class WhatsAppDisconnected(AtendeError):
    error_code = "WHATSAPP_DISCONNECTED"
    http_status = 503


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as the seeds show (`2026-01-21T10:30:00Z`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GatewayError(AtendeError):
    """The WhatsApp gateway refused or failed a session operation (connect, status, logout)."""

    error_code = "GATEWAY_ERROR"
    http_status = 502


class GatewayAddressNotAllowed(GatewayError):
    """The gateway or media URL leads to an address Atende may not connect to, or a media URL is
    not on the session's own gateway (see `atende.netguard` and ATENDE_GATEWAY_ALLOWED_NETWORKS)."""

    error_code = "GATEWAY_ADDRESS_NOT_ALLOWED"
