"""Secrets that are never a default: strength rules, and generating one once into a file.

A secret published anywhere (a README, this source, a tutorial) signs nothing: the old
development default and the usual placeholders are refused in every mode, as are short or
repetitive ones. With none given, a random one is made once and kept with mode 0600, so a
fresh install is safe without any setting and restarts keep their tokens valid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

MIN_SECRET_CHARS = 32
MIN_DISTINCT_CHARS = 10  # "aaaa…" or "0123012301…" is long but guessable
GENERATED_BYTES = 48
# Published values: the development default this project once shipped, and the placeholders
# of tutorials and .env examples (compared case-insensitively).
KNOWN_SECRETS = frozenset(
    {
        "atende-development-secret-change-me",
        "use-a-long-random-secret",
        "change-me",
        "changeme",
        "secret",
        "your-secret-key",
        "your-256-bit-secret",
        "supersecretkey",
        "super-secret-key",
        "jwt-secret",
        "jwt_secret_key",
        "mysecretkey",
    }
)


class WeakSecret(ValueError):
    """A configured secret that must not be used."""


def new_secret() -> str:
    return secrets.token_urlsafe(GENERATED_BYTES)


def check_strength(name: str, value: str) -> None:
    if value.strip().lower() in KNOWN_SECRETS:
        raise WeakSecret(f"{name} is a published example value; set a random secret of your own")
    if len(value) < MIN_SECRET_CHARS:
        raise WeakSecret(f"{name} must be at least {MIN_SECRET_CHARS} characters long")
    if len(set(value)) < MIN_DISTINCT_CHARS:
        raise WeakSecret(f"{name} is too repetitive to be a secret")


def load_or_create(path: Path) -> tuple[str, bool]:
    """The secret kept at `path`, or a new one written there (0600). (secret, created)

    Two processes starting at once on one data directory agree: the file appears whole and
    only once (written aside, then hard-linked into place, which fails if it exists)."""
    if path.exists():
        return _read(path), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = new_secret()
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            return _read(path), False
    finally:
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()
    return value, True


def _read(path: Path) -> str:
    return path.read_text().strip()
