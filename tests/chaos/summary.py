"""One line per chaos/abuse test: what was tried and what was lost (which must be nothing).

Lines are kept here and printed by `pytest_terminal_summary` (tests/conftest.py) under a
"chaos summary" heading, so they show in CI output without `-s`.
"""

from __future__ import annotations

LINES: list[str] = []


def report(test: str, tried: str, lost: str) -> None:
    """Record a summary line; `lost` says what went missing, e.g. "nothing" or "3 messages"."""
    line = f"{test}: tried {tried}; lost {lost}"
    LINES.append(line)
    print(f"\n{line}")
