"""HTTP plumbing shared by the gateway modules: one call, errors translated at the boundary.

httpx raises transport errors, and gateways answer with status codes; provider callers only want
to know "retry later" (`GatewayUnavailable`) or "give up" (`GatewayRejected`). Reasons never carry
URLs' query strings or headers, so an API key can not leak into a log line through an exception.
"""

from __future__ import annotations

import base64
import binascii
import json as jsonlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from atende.providers.base import GatewayRejected, GatewayUnavailable, SessionConfig

DEFAULT_TIMEOUT_SECS = 15.0  # a gateway slower than this is treated as down; the outbox retries
REASON_MAX_CHARS = 300  # error bodies can be whole HTML pages; keep reasons readable

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
    return secs if secs > 0 else DEFAULT_TIMEOUT_SECS


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
    """One request; 2xx/3xx responses are returned, everything else becomes a ProviderError.

    `describe_error` lets a gateway module turn its own error JSON into a reason first.
    """
    where = f"{method} {httpx.URL(url).path}"  # never the query string: it may hold a token
    try:
        response = await client.request(
            method, url, headers=dict(headers), json=json, params=params, timeout=timeout_secs
        )
    except httpx.TimeoutException as exc:
        raise GatewayUnavailable(
            f"gateway timed out ({where})", maybe_delivered=isinstance(exc, _UNANSWERED)
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise GatewayRejected(f"gateway URL is not http(s) ({where})") from exc
    except httpx.TransportError as exc:
        raise GatewayUnavailable(
            f"gateway unreachable ({where}): {type(exc).__name__}",
            maybe_delivered=isinstance(exc, _UNANSWERED),
        ) from exc
    if response.status_code >= 500:
        raise GatewayUnavailable(f"gateway error {response.status_code} ({where})")
    if response.status_code >= 400:
        reason = error_reason(response, describe_error)
        raise GatewayRejected(f"{reason} ({where})", response.status_code)
    return response


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
    """A short human reason from a gateway's error body, whatever its dialect."""
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
    a, b = httpx.URL(url), httpx.URL(base_url)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
