"""Which browser origins may call Atende with credentials: REST cookies and every socket."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from atende.config import Settings


def origin_allowed(settings: Settings, connection: HTTPConnection) -> bool:
    """Browsers always send Origin; tools (no Origin header) are allowed, tokens still apply."""
    origin = connection.headers.get("origin")
    if origin is None or origin.rstrip("/") in settings.origins:
        return True
    # The inbox served by this very process (e.g. opened as localhost while the public URL says
    # 127.0.0.1) is same-origin: its host matches the Host header the browser sent.
    host = connection.headers.get("host")
    return host is not None and origin.split("://", 1)[-1].rstrip("/") == host
