"""Input cleaning: message text (length, HTML neutralised by nh3) and U+0000 in decoded JSON.

The JSON walks are iterative: JSON nests up to orjson's depth limit (1024), deeper than Python's
recursion limit, and a recursive walk of a 2 KB `[[[...\\u0000...]]]` died in RecursionError
(a 500 and a 300 KB traceback).
"""

from __future__ import annotations

import html
from typing import Any

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


def contains_nul(value: Any) -> bool:
    """Whether U+0000 is in any string of decoded JSON (keys included), at any depth."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def without_nul(value: Any) -> Any:
    """A copy of decoded JSON with U+0000 removed from every string (keys included)."""
    root = [value]
    slots: list[tuple[Any, Any]] = [(root, 0)]  # (container, key) whose value is still raw
    while slots:
        container, key = slots.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = item.replace("\x00", "")
        elif isinstance(item, list):
            copy = list(item)
            container[key] = copy
            slots.extend((copy, index) for index in range(len(copy)))
        elif isinstance(item, dict):
            copied = {_key_without_nul(k): v for k, v in item.items()}
            container[key] = copied
            slots.extend((copied, k) for k in copied)
    return root[0]


def _key_without_nul(key: Any) -> Any:
    return key.replace("\x00", "") if isinstance(key, str) else key
