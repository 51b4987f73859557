"""Secrets at rest: gateway URLs, API keys and webhook secrets are stored encrypted.

The key is derived (HKDF-SHA256) from the master key `ATENDE_SECRET_KEY`; each value is sealed
with AES-256-GCM under a fresh nonce, and bound to its column (the associated data), so a value
copied into another column does not open. A stored value reads

    enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>

`v1` names the scheme and the key id names the key, so a later key or scheme can be added
next to this one and old rows re-encrypted at leisure. Opening a value with any other key
fails closed with `SecretKeyMismatch`, never with garbage.

`EncryptedText` makes this transparent to the ORM: each engine carries the vault of the
settings it was built for (`attach`), so two apps in one process may use different keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

PREFIX = "enc:"
SCHEME = "v1"
NONCE_BYTES = 12  # AES-GCM's standard nonce; random per value
HKDF_INFO = b"atende/secrets-at-rest/v1"
_DIALECT_ATTR = "atende_vault"


class SecretKeyMismatch(RuntimeError):
    """A stored secret does not open with this ATENDE_SECRET_KEY (or is not sealed at all)."""


class Vault:
    def __init__(self, master_key: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
            master_key.encode()
        )
        self._aead = AESGCM(derived)
        # Names the key in each value: a wrong key is told apart from a damaged value.
        self.key_id = hmac.new(derived, b"key id", hashlib.sha256).hexdigest()[:8]

    def seal(self, plaintext: str, column: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), column.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{PREFIX}{SCHEME}:{self.key_id}:{body}"

    def open(self, stored: str, column: str) -> str:
        scheme, key_id, body = _parts(stored, column)
        if scheme != SCHEME:
            raise SecretKeyMismatch(f"{column}: unknown encryption scheme {scheme!r}")
        if key_id != self.key_id:
            raise SecretKeyMismatch(
                f"{column} was stored with another ATENDE_SECRET_KEY (key id {key_id}, this one "
                f"is {self.key_id}): start Atende with the key the data was written with"
            )
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            opened = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], column.encode())
        except (InvalidTag, ValueError) as exc:
            raise SecretKeyMismatch(f"{column}: stored secret is damaged or was moved") from exc
        return opened.decode()


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def _parts(stored: str, column: str) -> tuple[str, str, str]:
    if not is_sealed(stored):
        raise SecretKeyMismatch(f"{column} holds an unencrypted value: run `atende migrate`")
    pieces = stored[len(PREFIX) :].split(":", 2)
    if len(pieces) != 3:
        raise SecretKeyMismatch(f"{column}: stored secret is damaged")
    return pieces[0], pieces[1], pieces[2]


def attach(engine: AsyncEngine, vault: Vault) -> None:
    """Make `engine`'s encrypted columns use `vault`."""
    setattr(engine.sync_engine.dialect, _DIALECT_ATTR, vault)


def _vault_of(dialect: Dialect) -> Vault:
    vault = getattr(dialect, _DIALECT_ATTR, None)
    if not isinstance(vault, Vault):
        raise SecretKeyMismatch("this database engine has no ATENDE_SECRET_KEY attached")
    return vault


class EncryptedText(TypeDecorator[str]):
    """Text sealed by the engine's vault on the way in, opened on the way out."""

    impl = Text
    cache_ok = True

    def __init__(self, column: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.column = column  # the associated data: "table.column"

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _vault_of(dialect).seal(value, self.column)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _vault_of(dialect).open(str(value), self.column)
