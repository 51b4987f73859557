"""Message text: length limit and HTML neutralised (nh3) before it is stored or shown."""

from __future__ import annotations

import html

import nh3

from atende.errors import InvalidInput, MessageTooLong

MAX_SANITIZE_PASSES = 4  # entity-encoded markup can hide one level of tags per pass


def clean_text(text: str, *, max_chars: int) -> str:
    """Strip every HTML tag, keep the plain characters a customer typed (`&`, `<3`).

    nh3 escapes what it keeps; unescaping afterwards could reveal encoded tags, so repeat
    until the text no longer changes.
    """
    if not isinstance(text, str):
        raise InvalidInput("text must be a string", details={"field": "text"})
    if len(text) > max_chars:
        raise MessageTooLong(
            f"Message text is limited to {max_chars} characters",
            details={"field": "text", "length": len(text), "max": max_chars},
        )
    current = text
    for _ in range(MAX_SANITIZE_PASSES):
        cleaned = html.unescape(nh3.clean(current, tags=set()))
        if cleaned == current:
            break
        current = cleaned
    else:
        current = nh3.clean(current, tags=set())
    return current.strip()
