"""Logging that never carries a secret: tokens in query strings are masked everywhere."""

from __future__ import annotations

import logging
import re

_SECRET_PARAM = re.compile(
    r"(?i)((?:token|access_token|api_?key|secret|hub\.verify_token)=)[^&\s\"']+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    return _BEARER.sub(r"\1***", _SECRET_PARAM.sub(r"\1***", text))


class RedactSecrets(logging.Filter):
    """uvicorn logs request lines with their query string (`/ws/chat?token=...`): mask it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_redaction() -> None:
    secret_filter = RedactSecrets()
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn", "atende", ""):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(secret_filter)
