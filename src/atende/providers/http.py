"""HTTP plumbing shared by the gateway modules: one call, errors translated at the boundary.

httpx raises transport errors, and gateways answer with status codes; provider callers only want
to know "retry later" (`GatewayUnavailable`) or "give up" (`GatewayRejected`). Reasons never carry
URLs' query strings or headers, so an API key can not leak into a log line through an exception.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json as jsonlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from atende.netguard import DestinationRefused, ResponseTooLarge
from atende.providers.base import (
    GatewayAddressRefused,
    GatewayAnswerTooLarge,
    GatewayRejected,
    GatewayUnavailable,
    MediaContent,
    SessionConfig,
)

DEFAULT_TIMEOUT_SECS = 15.0  # a gateway slower than this is treated as down; the outbox retries
MAX_TIMEOUT_SECS = 120.0  # a session's own `timeout_secs` option can not hold a caller longer
REASON_MAX_CHARS = 300  # error bodies can be whole HTML pages; keep log lines readable
TOTAL_TIMEOUT_FACTOR = 2  # a whole exchange may take this many per-read timeouts, no more
logger = logging.getLogger(__name__)

ErrorDescriber = Callable[[Any], str | None]
# Failures after the request went out whole: the gateway may have done the work unanswered.
_UNANSWERED = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def timeout_for(session: SessionConfig) -> float:
    """The per-request timeout: `options["timeout_secs"]` or the default."""
    value = session.options.get("timeout_secs", DEFAULT_TIMEOUT_SECS)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return DEFAULT_TIMEOUT_SECS
    try:
        secs = float(value)  # options set through the CLI or REST are strings
    except ValueError:
        return DEFAULT_TIMEOUT_SECS
    return min(secs, MAX_TIMEOUT_SECS) if secs > 0 else DEFAULT_TIMEOUT_SECS


def with_default_timeout(session: SessionConfig, secs: float) -> SessionConfig:
    """`session` with `options["timeout_secs"]` defaulted to `secs` (the server's setting)."""
    if "timeout_secs" in session.options:
        return session
    return replace(session, options={**session.options, "timeout_secs": secs})


def require_base_url(session: SessionConfig) -> str:
    if not session.base_url:
        raise GatewayRejected(f"session {session.name!r} has no gateway base_url configured")
    return session.base_url.rstrip("/")


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json: Any = None,
    params: Mapping[str, str] | None = None,
    timeout_secs: float,
    describe_error: ErrorDescriber | None = None,
) -> httpx.Response:
    """One request; 2xx responses are returned, everything else becomes a ProviderError.

    `describe_error` lets a gateway module turn its own error JSON into a reason for the log.
    """
    where = f"{method} {httpx.URL(url).path}"  # never the query string: it may hold a token
    request = client.build_request(
        method, url, headers=dict(headers), json=json, params=params, timeout=timeout_secs
    )
    response = await _send(client, request, where, timeout_secs, stream=False)
    _check_status(response, where, describe_error, body_read=True)
    return response


async def open_stream(
    client: httpx.AsyncClient, url: str, *, headers: Mapping[str, str], timeout_secs: float
) -> httpx.Response:
    """A GET whose body is still to be read (media): the caller reads it, then closes it."""
    where = f"GET {httpx.URL(url).path}"
    # identity: a compressed answer could inflate far past the size cap in one chunk.
    request = client.build_request(
        "GET", url, headers={**headers, "Accept-Encoding": "identity"}, timeout=timeout_secs
    )
    response = await _send(client, request, where, timeout_secs, stream=True)
    try:
        _check_status(response, where, None, body_read=False)
    except BaseException:
        await response.aclose()
        raise
    return response


async def _send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    where: str,
    timeout_secs: float,
    *,
    stream: bool,
) -> httpx.Response:
    """Send, translating transport failures and the guard's refusals. A whole exchange is also
    bounded (`TOTAL_TIMEOUT_FACTOR`): httpx's timeouts are per read, so a gateway trickling one
    byte at a time would otherwise hold the caller forever."""
    try:
        async with asyncio.timeout(timeout_secs * TOTAL_TIMEOUT_FACTOR):
            return await client.send(request, stream=stream)
    except DestinationRefused as exc:
        logger.warning("gateway call %s refused by the outbound guard: %s", where, exc)
        raise GatewayAddressRefused(f"gateway address is not allowed ({where})") from exc
    except ResponseTooLarge as exc:
        raise GatewayAnswerTooLarge(f"gateway answer is too large ({where})") from exc
    except httpx.TimeoutException as exc:
        raise GatewayUnavailable(
            f"gateway timed out ({where})", maybe_delivered=isinstance(exc, _UNANSWERED)
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise GatewayAddressRefused(f"gateway URL is not http(s) ({where})") from exc
    except httpx.TransportError as exc:
        raise GatewayUnavailable(
            f"gateway unreachable ({where}): {type(exc).__name__}",
            maybe_delivered=isinstance(exc, _UNANSWERED),
        ) from exc
    except TimeoutError as exc:  # the whole-exchange bound above
        raise GatewayUnavailable(
            f"gateway too slow ({where})", maybe_delivered=request.method != "GET"
        ) from exc


def _check_status(
    response: httpx.Response, where: str, describe: ErrorDescriber | None, *, body_read: bool
) -> None:
    status = response.status_code
    if status >= 500:
        raise GatewayUnavailable(f"gateway error {status} ({where})")
    if status >= 400:
        detail = error_reason(response, describe) if body_read else None
        # The gateway's words go to the log, truncated; the client gets a stable reason.
        logger.warning("gateway answered %s to %s: %s", status, where, detail or "(streamed)")
        raise GatewayRejected(
            f"gateway rejected the request ({status}) ({where})", status, detail=detail
        )
    if status >= 300:  # redirects are never followed: the next hop is not one we checked
        raise GatewayRejected(f"gateway answered with a redirect ({status}) ({where})", status)


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON of a successful response; a non-JSON answer is a gateway bug, not ours."""
    try:
        return response.json()
    except ValueError as exc:
        raise GatewayRejected(
            f"gateway answered {response.status_code} with a non-JSON body", response.status_code
        ) from exc


def json_object(response: httpx.Response) -> dict[str, Any]:
    body = json_body(response)
    if not isinstance(body, dict):
        raise GatewayRejected(
            "gateway answered with an unexpected JSON shape", response.status_code
        )
    return body


def error_reason(response: httpx.Response, describe: ErrorDescriber | None = None) -> str:
    """A short human reason from a gateway's error body, whatever its dialect (for the log)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    reason = describe(body) if describe is not None and body is not None else None
    if reason is None and body is not None:
        reason = _generic_reason(body)
    if not reason:
        reason = response.text.strip() or response.reason_phrase or "rejected"
    return f"gateway rejected the request ({response.status_code}): {reason[:REASON_MAX_CHARS]}"


def _generic_reason(body: Any) -> str | None:
    """Evolution nests messages under `response.message`; Meta under `error.message`; WAHA and
    most Nest/Express services use a top-level `message` (string or list)."""
    if not isinstance(body, dict):
        return _flatten(body)
    response = body.get("response")
    if isinstance(response, dict) and "message" in response:
        return _flatten(response["message"])
    error = body.get("error")
    if isinstance(error, dict):
        return _flatten(error.get("message") or error.get("error_user_msg"))
    for key in ("message", "error", "detail"):
        if body.get(key):
            return _flatten(body[key])
    return None


def _flatten(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [part for part in (_flatten(item) for item in value) if part]
        return "; ".join(parts) or None
    return jsonlib.dumps(value, ensure_ascii=False, default=str)


def decode_data_url(url: str) -> tuple[bytes, str]:
    """`data:<mime>;base64,<data>` → (bytes, mime). Raises GatewayRejected when it is not one."""
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        raise GatewayRejected("media is not a base64 data URL")
    mimetype = header[len("data:") : -len(";base64")] or "application/octet-stream"
    return decode_base64(data), mimetype


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise GatewayRejected("gateway returned invalid base64 media") from exc


def to_data_url(data: str, mimetype: str) -> str:
    """Wrap raw base64 in a data URL, leaving an existing data URL alone."""
    return data if data.startswith("data:") else f"data:{mimetype};base64,{data}"


def same_origin(url: str, base_url: str | None) -> bool:
    """Whether `url` points at the gateway itself (so sending it our API key is safe)."""
    if not base_url:
        return False
    try:
        return origin_of(url) == origin_of(base_url)
    except httpx.InvalidURL:
        return False


def origin_of(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


async def fetch_media_url(
    client: httpx.AsyncClient,
    session: SessionConfig,
    url: str,
    *,
    mimetype: str | None,
    headers: Mapping[str, str] | None = None,
    also_from: tuple[str, ...] = (),
) -> MediaContent:
    """Open a media file at `url`, which must be on the session's own gateway (its base_url) or
    on one of `also_from` (https hosts the provider documents for media). A webhook names the
    URL, so anything else would let a webhook make Atende fetch an arbitrary page for a client.
    The API key goes only to the gateway itself (`headers` is used for the session's origin)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise GatewayAddressRefused("media URL is not a valid URL") from exc
    own = same_origin(url, session.base_url)
    documented = parsed.scheme == "https" and parsed.host in also_from
    if not own and not documented:
        logger.warning("media URL refused: %s is not the gateway's origin", parsed.host[:100])
        raise GatewayAddressRefused("media URL is not on the session's gateway")
    response = await open_stream(
        client, url, headers=headers or {}, timeout_secs=timeout_for(session)
    )
    fallback = response.headers.get("content-type", "application/octet-stream")
    return MediaContent(mimetype or fallback, response=response)
