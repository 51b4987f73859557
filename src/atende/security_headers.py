"""Security headers on every HTTP answer: pages, API, errors, static files (issue 10, item 13).

The policy lets the inbox load only its own files. Images also come from `blob:` (media is
fetched with the bearer token and shown through an object URL) and `data:` (QR codes, the
favicon); audio and video from `blob:`. A route that set its own policy keeps it (media answers
carry `Content-Security-Policy: sandbox`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_RAW = [
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in SECURITY_HEADERS.items()
]


def add_missing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` plus each security header the answer does not carry yet."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *((name, value) for name, value in _RAW if name not in present)]


class SecurityHeaders:
    """Pure ASGI: adds the headers to each `http.response.start`, never overwriting a route's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": add_missing(list(message.get("headers", [])))}
            await send(message)

        await self.app(scope, receive, send_with_headers)
