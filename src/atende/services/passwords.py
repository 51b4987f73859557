"""Passwords: argon2 off the event loop, behind a small gate, and the rules a new one must meet.

argon2 takes ~300 ms of CPU and 64 MiB per hash by design; on the event loop four logins a
second stalled every socket and webhook of the process. Hashes run in worker threads (argon2-cffi
releases the GIL), at most `password_hash_concurrency` at once so a login flood queues instead
of eating all memory and cores.
"""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from atende.errors import InvalidInput
from atende.services.common_passwords import COMMON_PASSWORDS

_hasher = PasswordHasher()
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this bounds the work a request can ask for


class WeakPassword(InvalidInput):
    error_code = "WEAK_PASSWORD"


def new_password() -> str:
    """A random password for a first login (`atende init`): 20 characters, easy to type."""
    return secrets.token_urlsafe(15)


def check_new_password(password: str, *, min_chars: int, email: str | None = None) -> None:
    """Refuse what guessing tries first: short, common, or the account's own name."""
    details = {"field": "password"}
    if len(password) < min_chars:
        raise WeakPassword(f"Password must have at least {min_chars} characters", details=details)
    if len(password) > MAX_PASSWORD_CHARS:
        raise WeakPassword(
            f"Password must have at most {MAX_PASSWORD_CHARS} characters", details=details
        )
    folded = password.casefold()
    if folded in COMMON_PASSWORDS or len(set(folded)) < 4:
        raise WeakPassword("This password is too common; choose another", details=details)
    local = (email or "").split("@", 1)[0].casefold()
    if len(local) >= 4 and local in folded:
        raise WeakPassword("The password must not contain the e-mail address", details=details)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class Passwords:
    """Hash and verify in threads; `verify_dummy` costs what a real check costs, so an
    unknown e-mail answers as slowly as a wrong password (no user enumeration by timing)."""

    def __init__(self, concurrency: int) -> None:
        self._gate = asyncio.Semaphore(max(1, concurrency))
        self._dummy: str | None = None

    async def _run(self, fn: functools.partial[str] | functools.partial[bool]) -> object:
        async with self._gate:
            return await asyncio.to_thread(fn)

    async def hash(self, password: str) -> str:
        result = await self._run(functools.partial(_hasher.hash, password))
        assert isinstance(result, str)
        return result

    async def verify(self, password_hash: str, password: str) -> bool:
        return bool(await self._run(functools.partial(_verify, password_hash, password)))

    async def verify_dummy(self, password: str) -> None:
        if self._dummy is None:
            self._dummy = await self.hash("atende-dummy-password-for-unknown-users")
        await self.verify(self._dummy, password)
