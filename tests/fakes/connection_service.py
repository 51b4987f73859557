"""A fake seed-003 connection service speaking the contract of docs/connection_service.md."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeGateway, json_of

QR_DATA_URL = "data:image/png;base64,iVBORw0KGgo="
_ids = itertools.count(1)


def new_id() -> str:
    return f"cs-{next(_ids):08d}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@dataclass
class FakeConnectionService(FakeGateway):
    api_key: str = "cs-key"
    webhook_key: str | None = "cs-webhook-secret"  # X-API-KEY on deliveries
    sessions: dict[str, str] = field(default_factory=dict)  # id → connected|qr|connecting|...
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    session: str = "tenant-1"

    def authorized(self, request: Request) -> bool:
        return request.headers.get("x-api-key") == self.api_key

    def unauthorized(self) -> Response:
        return _error(401, "invalid X-API-KEY")

    def webhook_headers(self, raw_body: bytes) -> dict[str, str]:
        return {"X-API-KEY": self.webhook_key} if self.webhook_key else {}

    def add_file(self, name: str, data: bytes, mimetype: str) -> str:
        self.files[name] = (data, mimetype)
        return f"{self.base_url}/media/{name}"

    def routes(self) -> list[Route]:
        return [
            Route("/sessions/start", self._start, methods=["POST"]),
            Route("/sessions/{id}/status", self._status, methods=["GET"]),
            Route("/sessions/{id}/contacts/{phone}", self._contact, methods=["GET"]),
            Route("/sessions/{id}", self._delete, methods=["DELETE"]),
            Route("/message/send", self._send, methods=["POST"]),
            Route("/media/{name}", self._media, methods=["GET"]),
        ]

    async def _start(self, request: Request) -> Response:
        session = str((await json_of(request)).get("session") or "")
        if not session:
            return _error(400, "session is required")
        status = self.sessions.setdefault(session, "qr")
        qr = QR_DATA_URL if status == "qr" else None
        return JSONResponse({"session": session, "status": status, "qr": qr})

    async def _status(self, request: Request) -> Response:
        session = request.path_params["id"]
        if session not in self.sessions:
            return _error(404, "unknown session")
        status = self.sessions[session]
        phone = "5511999990000" if status == "connected" else None
        return JSONResponse({"session": session, "status": status, "phone": phone})

    async def _contact(self, request: Request) -> Response:
        phone = request.path_params["phone"]
        exists = phone not in self.unknown_numbers
        return JSONResponse(
            {"exists": exists, "jid": f"{phone}@s.whatsapp.net" if exists else None}
        )

    async def _delete(self, request: Request) -> Response:
        if self.sessions.pop(request.path_params["id"], None) is None:
            return _error(404, "unknown session")
        return Response(status_code=204)

    async def _send(self, request: Request) -> Response:
        body = await json_of(request)
        to = str(body.get("to") or "")
        if to.split("@")[0] in self.unknown_numbers:
            return _error(400, f"{to} is not on WhatsApp")
        if self.sessions.get(str(body.get("session"))) != "connected":
            return _error(409, "session is not connected")
        jid = to if "@" in to else f"{to}@s.whatsapp.net"
        return JSONResponse({"id": new_id(), "to": jid, "status": "sent"})

    async def _media(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.files:
            return _error(404, "no such file")
        data, mimetype = self.files[name]
        return Response(data, media_type=mimetype)

    # -- webhook payload builders ----------------------------------------------------------------
    def inbound_text(
        self,
        from_phone: str,
        text: str,
        *,
        msg_id: str | None = None,
        push_name: str | None = "Maria",
        from_me: bool = False,
        session: str | None = None,
    ) -> dict[str, Any]:
        message = {
            "id": msg_id or new_id(),
            "from": f"{from_phone}@s.whatsapp.net",
            "text": text,
            "timestamp": 1729500000,
            "fromMe": from_me,
            "pushName": push_name,
            "type": "text",
        }
        return {"event": "message", "session": session or self.session, "message": message}

    def inbound_media(
        self,
        from_phone: str,
        kind: str,
        url: str,
        *,
        mimetype: str = "image/jpeg",
        filename: str | None = None,
        caption: str | None = None,
        msg_id: str | None = None,
        session: str | None = None,
    ) -> dict[str, Any]:
        payload = self.inbound_text(from_phone, "", msg_id=msg_id, session=session)
        media = {"url": url, "mimetype": mimetype, "filename": filename, "caption": caption}
        payload["message"] |= {"type": kind, "text": caption, "media": media}
        return payload

    def ack(self, msg_id: str, status: str, *, session: str | None = None) -> dict[str, Any]:
        return {
            "event": "message.status",
            "session": session or self.session,
            "message_id": msg_id,
            "status": status,
            "timestamp": 1729500001,
        }

    def connection(self, status: str, *, session: str | None = None) -> dict[str, Any]:
        return {"event": "connection", "session": session or self.session, "status": status}

    def qr(self, qr: str = QR_DATA_URL, *, session: str | None = None) -> dict[str, Any]:
        return self.connection("qr", session=session) | {"qr": qr}
