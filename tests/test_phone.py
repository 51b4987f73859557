from __future__ import annotations

import pytest

from atende.errors import InvalidPhoneNumber
from atende.phone import normalise, variants


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("5511987654321", "5511987654321"),
        ("+55 (11) 98765-4321", "5511987654321"),
        ("551187654321@s.whatsapp.net", "5511987654321"),  # WhatsApp's 12-digit form
        ("5531987654321@c.us", "5531987654321"),
        ("553187654321:12@s.whatsapp.net", "5531987654321"),  # device suffix
        ("14155550123", "14155550123"),
        ("551133334444", "551133334444"),  # a landline keeps 8 digits
    ],
)
def test_normalise(raw: str, canonical: str) -> None:
    assert normalise(raw) == canonical


@pytest.mark.parametrize("raw", ["", "abc", "123", "1234567890123456", "12345@lid", "x@g.us"])
def test_invalid(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalise(raw)


def test_variants_cover_both_brazilian_forms() -> None:
    assert variants("5531987654321") == ["5531987654321", "553187654321"]
    assert variants("14155550123") == ["14155550123"]
