"""Small payload helpers every gateway module needs: typed field access, JIDs, times, secrets."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from atende.providers.base import MalformedPayload

JID_USER_SUFFIXES = ("@s.whatsapp.net", "@c.us")  # a phone-number address (Baileys, WAHA)
LID_SUFFIX = "@lid"  # a hidden id: never a phone number
GROUP_SUFFIX = "@g.us"
EPOCH_MS_THRESHOLD = 10**11  # seconds since 1970 stay below this until the year 5138


def obj(value: Any, what: str) -> dict[str, Any]:
    """`value` as a JSON object, or MalformedPayload naming the field."""
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} must be an object")
    return value


def req_str(data: Mapping[str, Any], key: str, what: str | None = None) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{what or key} must be a non-empty string")
    return value


def opt_str(data: Any, key: str) -> str | None:
    """`data[key]` when `data` is an object and the value a non-empty string; else None."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def sub(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    """An optional nested object: `data[key]` when it is one, else {}."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works on Starlette's Headers and on plain dicts."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def secret_equals(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing says nothing about the secret."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def jid_user(jid: str) -> str:
    """`5511999:12@s.whatsapp.net` → `5511999` (drops the server and the device suffix)."""
    return jid.split("@", 1)[0].split(":", 1)[0]


def is_phone_jid(jid: str) -> bool:
    return jid.endswith(JID_USER_SUFFIXES)


def phone_of(jid: str | None, alt: str | None = None) -> str | None:
    """Phone digits of an address; a LID yields its alternative phone address, or None."""
    if not jid:
        return None
    if jid.endswith(LID_SUFFIX):
        return phone_of(alt) if alt and not alt.endswith(LID_SUFFIX) else None
    if jid.endswith(GROUP_SUFFIX):
        return None
    user = jid_user(jid)
    return user if user.isdigit() else None


def to_datetime(value: Any) -> datetime | None:
    """Epoch seconds or milliseconds, as number, digit string, or protobuf Long {low, high}."""
    if isinstance(value, dict):
        low, high = value.get("low"), value.get("high", 0)
        value = (high << 32) + (low & 0xFFFFFFFF) if isinstance(low, int) else None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    seconds = value / 1000 if value >= EPOCH_MS_THRESHOLD else value
    return datetime.fromtimestamp(seconds, tz=UTC)
