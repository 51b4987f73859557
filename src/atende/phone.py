"""Phone numbers: one canonical key per customer, whatever form a gateway or a user gives.

WhatsApp still addresses many Brazilian mobiles without the ninth digit (55 DD XXXXXXXX) while
people type them with it (55 DD 9XXXXXXXX). The contact key is the E.164 form *with* the nine,
so both forms land on one contact; the gateway's own address is kept verbatim elsewhere for replies.
"""

from __future__ import annotations

import re

import phonenumbers

from atende.errors import InvalidPhoneNumber

_NON_DIGITS = re.compile(r"\D")
_JID_SUFFIXES = ("@s.whatsapp.net", "@c.us")
BRAZIL_CC = "55"


def digits_of(raw: str) -> str:
    """Strip a JID suffix (`@c.us`, `@s.whatsapp.net`, device part `:12`) and non-digits."""
    text = raw.strip()
    for suffix in _JID_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    text = text.split(":", 1)[0]
    return _NON_DIGITS.sub("", text)


def is_lid(address: str) -> bool:
    """`@lid` addresses are WhatsApp's hidden ids, never phone numbers (PROVIDERS.md §4)."""
    return address.endswith("@lid")


def add_brazil_ninth_digit(digits: str) -> str:
    """55 DD 8-digit mobile (first digit 6-9) → 55 DD 9 + 8 digits; anything else unchanged."""
    if len(digits) == 12 and digits.startswith(BRAZIL_CC) and digits[4] in "6789":
        return digits[:4] + "9" + digits[4:]
    return digits


def normalise(raw: str) -> str:
    """Canonical contact key: E.164 digits without '+', Brazilian mobiles with the ninth digit.

    Raises InvalidPhoneNumber for anything that cannot be a phone number.
    """
    if not isinstance(raw, str) or is_lid(raw) or "@g.us" in raw:
        raise InvalidPhoneNumber("Invalid phone number", details={"phone_number": str(raw)[:40]})
    digits = digits_of(raw)
    if not 8 <= len(digits) <= 15:
        raise InvalidPhoneNumber(
            "Phone number must have 8 to 15 digits, with country code",
            details={"phone_number": raw[:40]},
        )
    digits = add_brazil_ninth_digit(digits)
    try:
        parsed = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(
            "Invalid phone number", details={"phone_number": raw[:40]}
        ) from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(
            "Invalid phone number for its country", details={"phone_number": raw[:40]}
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def variants(canonical: str) -> list[str]:
    """Both Brazilian forms of a canonical number (with and without the nine), canonical first."""
    found = [canonical]
    if len(canonical) == 13 and canonical.startswith(BRAZIL_CC) and canonical[4] == "9":
        found.append(canonical[:4] + canonical[5:])
    return found
