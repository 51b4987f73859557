"""Logging that never carries a secret and does not drown in repeated tracebacks.

Both rules are filters on our *handlers*, so they see every record that is written, including
those of third-party loggers (uvicorn, httpx, SQLAlchemy) that propagate to them:
- `RedactSecrets` masks URL userinfo (`https://user:pass@host`), the values of secret-looking
  keys (`apikey=`, `token`, `secret`, `password`, `Authorization: Bearer ...`), in the message,
  its arguments and the formatted traceback.
- `TracebackRateLimit` prints the traceback of one error (same logger, message and raise site)
  at most once per window; repeats are single lines that count them.
httpx and httpcore log every request with its full URL at INFO: they are held to WARNING.
`log_config()` is the logging setup of `atende serve` (uvicorn's, with these filters).
"""

from __future__ import annotations

import copy
import logging
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.config import LOGGING_CONFIG

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@]+@")
_SECRET_KEY = r"[\w.-]*(?:token|api[_-]?key|secret|passw(?:or)?d|signature|authorization)[\w.-]*"
_SECRET_VALUE = re.compile(
    rf"(?i)\b({_SECRET_KEY})([\"']?\s*[=:]\s*[\"']?)((?:bearer|basic|token)\s+)?[^\s&\"',;}}\]]+"
)
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
MASK = "***"
QUIET_LOGGERS = ("httpx", "httpcore")  # INFO lines carry full URLs (with their credentials)
MAX_TRACEBACK_CHARS = 20_000
TRACEBACK_WINDOW_SECS = 60.0
LOG_FORMAT = "[%(asctime)s] [%(levelname)s] %(name)s: %(message)s"


def redact(text: str) -> str:
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _SECRET_VALUE.sub(rf"\1\2{MASK}", text)
    return _SCHEME_CREDENTIAL.sub(rf"\1 {MASK}", text)


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned  # an object whose text showed a secret


class RedactSecrets(logging.Filter):
    """Masks secrets in what the record will print: message, arguments, traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):  # kept a tuple: uvicorn's access formatter unpacks it
            record.args = tuple(_redact_arg(a) for a in record.args)
        self._redact_assembled(record)
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = _bounded(redact(logging.Formatter().formatException(record.exc_info)))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True

    @staticmethod
    def _redact_assembled(record: logging.LogRecord) -> None:
        """A secret only visible once the message is put together (a dict argument's `apikey`)."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return  # a broken format string: logging reports it itself
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None


def _bounded(text: str) -> str:
    """A traceback's head and tail: the frames in between of a deep one tell nothing new."""
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    half = MAX_TRACEBACK_CHARS // 2
    return f"{text[:half]}\n... ({len(text) - 2 * half} characters left out) ...\n{text[-half:]}"


@dataclass
class _Printed:
    at: float
    repeats: int = 0


class TracebackRateLimit(logging.Filter):
    """One traceback per error per window; a repeat inside it is one line with a count."""

    MAX_ERRORS = 1000  # distinct errors remembered

    def __init__(
        self,
        window_secs: float = TRACEBACK_WINDOW_SECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window_secs = window_secs
        self._clock = clock
        self._printed: dict[tuple[str, ...], _Printed] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[0] is None:
            return True
        key, now = _error_key(record), self._clock()
        printed = self._printed.get(key)
        if printed is None or now - printed.at >= self.window_secs:
            self._remember(key, _Printed(now))
            return True
        printed.repeats += 1
        name = record.exc_info[0].__name__
        since = now - printed.at
        record.msg = (
            f"{record.getMessage()} [{name}; repeat {printed.repeats} in {since:.0f} s, "
            f"traceback shown at most once per {self.window_secs:g} s]"
        )
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True

    def _remember(self, key: tuple[str, ...], printed: _Printed) -> None:
        if len(self._printed) >= self.MAX_ERRORS:
            self._printed.pop(next(iter(self._printed)))
        self._printed[key] = printed


def _error_key(record: logging.LogRecord) -> tuple[str, ...]:
    assert record.exc_info is not None
    kind, _, tb = record.exc_info
    frames = traceback.extract_tb(tb)
    site = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return (record.name, str(record.msg), kind.__qualname__ if kind else "", site)


def secure(handler: logging.Handler) -> None:
    """Put the two filters on `handler` (once): rate limit first, then redaction."""
    if not any(isinstance(f, TracebackRateLimit) for f in handler.filters):
        handler.addFilter(TracebackRateLimit())
    if not any(isinstance(f, RedactSecrets) for f in handler.filters):
        handler.addFilter(RedactSecrets())


def install_redaction() -> None:
    """For an app run by someone else's logging setup: secure the handlers that exist now."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            secure(handler)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's logging setup plus ours: the filters on every handler, a root handler."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "tracebacks": {"()": TracebackRateLimit},
        "redact": {"()": RedactSecrets},
    }
    config["formatters"]["atende"] = {"format": LOG_FORMAT}
    config["handlers"]["atende"] = {
        "class": "logging.StreamHandler",
        "formatter": "atende",
        "stream": "ext://sys.stderr",
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["tracebacks", "redact"]
    config["root"] = {"handlers": ["atende"], "level": level}
    for name in QUIET_LOGGERS:
        config["loggers"][name] = {"level": "WARNING"}
    return config
