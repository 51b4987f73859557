"""A fake WAHA speaking the endpoints and payloads of PROVIDERS.md §2."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import QR_PNG_BASE64, FakeGateway, json_of

Engine = Literal["WEBJS", "NOWEB", "GOWS"]
_ids = itertools.count(1)


def new_id() -> str:
    return f"4CC5{next(_ids):028X}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"statusCode": status, "message": message, "error": "Error"}, status_code=status
    )


@dataclass
class FakeWaha(FakeGateway):
    api_key: str = "waha-key"
    hmac_key: str | None = None  # X-Webhook-Hmac on deliveries, when set
    engine: Engine = "WEBJS"
    sessions: dict[str, str] = field(default_factory=dict)  # name → STOPPED|SCAN_QR_CODE|WORKING...
    start_status: str = "SCAN_QR_CODE"  # what a started session turns into
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # /api/files/<name>
    session: str = "default"  # default session of the payload builders
    me: str = "5511999990000@c.us"

    def authorized(self, request: Request) -> bool:
        return request.headers.get("x-api-key") == self.api_key

    def unauthorized(self) -> Response:
        return _error(401, "Unauthorized")

    def webhook_headers(self, raw_body: bytes) -> dict[str, str]:
        headers = {
            "X-Webhook-Request-Id": f"req-{next(_ids)}",
            "X-Webhook-Timestamp": str(int(time.time() * 1000)),
        }
        if self.hmac_key:
            digest = hmac.new(self.hmac_key.encode(), raw_body, hashlib.sha512).hexdigest()
            headers |= {"X-Webhook-Hmac": digest, "X-Webhook-Hmac-Algorithm": "sha512"}
        return headers

    def add_file(self, name: str, data: bytes, mimetype: str) -> str:
        """Store a downloadable file; returns its URL as WAHA would build it."""
        self.files[name] = (data, mimetype)
        return f"{self.base_url}/api/files/{name}"

    def routes(self) -> list[Route]:
        return [
            Route("/api/sessions", self._create, methods=["POST"]),
            Route("/api/sessions/{s}", self._get, methods=["GET"]),
            Route("/api/sessions/{s}/start", self._start, methods=["POST"]),
            Route("/api/sessions/{s}/logout", self._logout, methods=["POST"]),
            Route("/api/{s}/auth/qr", self._qr, methods=["GET"]),
            Route("/api/contacts/check-exists", self._check, methods=["GET"]),
            Route("/api/files/{name:path}", self._file, methods=["GET"]),
            Route("/api/{kind}", self._send, methods=["POST"]),
        ]

    async def _create(self, request: Request) -> Response:
        body = await json_of(request)
        name = str(body.get("name") or "default")
        if name in self.sessions:
            return _error(422, f"Session '{name}' already exists. Use PUT to update it.")
        self.sessions[name] = self.start_status if body.get("start", True) else "STOPPED"
        return JSONResponse(
            {"name": name, "status": self.sessions[name], "config": body.get("config")},
            status_code=201,
        )

    async def _get(self, request: Request) -> Response:
        name = request.path_params["s"]
        if name not in self.sessions:
            return _error(404, f"Session '{name}' does not exist")
        status = self.sessions[name]
        me = {"id": self.me, "pushName": "Loja"} if status == "WORKING" else None
        return JSONResponse(
            {
                "name": name,
                "status": status,
                "config": {},
                "me": me,
                "engine": {"engine": self.engine},
            }
        )

    async def _start(self, request: Request) -> Response:
        name = request.path_params["s"]
        if name not in self.sessions:
            return _error(404, f"Session '{name}' does not exist")
        if self.sessions[name] != "STOPPED":
            return _error(422, f"Session '{name}' is already started")
        self.sessions[name] = self.start_status
        return JSONResponse({"name": name, "status": self.sessions[name]}, status_code=201)

    async def _logout(self, request: Request) -> Response:
        name = request.path_params["s"]
        if name not in self.sessions:
            return _error(404, f"Session '{name}' does not exist")
        self.sessions[name] = "STOPPED"
        return JSONResponse({"name": name, "status": "STOPPED"}, status_code=201)

    async def _qr(self, request: Request) -> Response:
        name = request.path_params["s"]
        if self.sessions.get(name) != "SCAN_QR_CODE":
            return _error(422, f"Session '{name}' is not in SCAN_QR_CODE status")
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"mimetype": "image/png", "data": QR_PNG_BASE64})
        return Response(base64.b64decode(QR_PNG_BASE64), media_type="image/png")

    async def _check(self, request: Request) -> Response:
        phone = request.query_params.get("phone", "")
        exists = phone not in self.unknown_numbers
        return JSONResponse({"numberExists": exists, "chatId": f"{phone}@c.us" if exists else None})

    async def _file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.files:
            return _error(404, "File not found")
        data, mimetype = self.files[name]
        return Response(data, media_type=mimetype)

    async def _send(self, request: Request) -> Response:
        if request.path_params["kind"] not in (
            "sendText",
            "sendImage",
            "sendFile",
            "sendVoice",
            "sendVideo",
        ):
            return _error(404, "Cannot POST")
        body = await json_of(request)
        chat_id = str(body.get("chatId", ""))
        if chat_id.split("@")[0] in self.unknown_numbers:
            return _error(400, f"Number {chat_id} is not on WhatsApp")
        return JSONResponse(
            self._sent(chat_id, str(body.get("text") or body.get("caption") or "")), status_code=201
        )

    def _sent(self, chat_id: str, body: str) -> dict[str, Any]:
        short = new_id()
        serialized = f"true_{chat_id}_{short}"
        if self.engine == "NOWEB":
            jid = chat_id.replace("@c.us", "@s.whatsapp.net")
            return {
                "key": {"remoteJid": jid, "fromMe": True, "id": short},
                "messageTimestamp": str(int(time.time())),
            }
        if self.engine == "GOWS":
            return {
                "id": serialized,
                "timestamp": int(time.time()),
                "from": self.me,
                "to": chat_id,
                "body": body,
            }
        ident = {"fromMe": True, "remote": chat_id, "id": short, "_serialized": serialized}
        return {"id": ident, "ack": 0, "body": body, "from": self.me, "to": chat_id, "fromMe": True}

    # -- webhook payload builders (§2.1-§2.2) ----------------------------------------------------
    def envelope(self, event: str, payload: Any, session: str | None = None) -> dict[str, Any]:
        return {
            "id": f"evt_01hx{next(_ids):020x}",
            "timestamp": int(time.time() * 1000),  # signed: Atende checks its window
            "event": event,
            "session": session or self.session,
            "metadata": {},
            "me": {"id": self.me, "pushName": "Loja"},
            "payload": payload,
            "environment": {"tier": "CORE", "version": "2024.10.1"},
            "engine": self.engine,
        }

    def _name_data(self, push_name: str | None) -> dict[str, Any]:
        if push_name is None:
            return {}
        return {"pushName": push_name} if self.engine == "NOWEB" else {"notifyName": push_name}

    def inbound_text(
        self,
        from_phone: str,
        text: str,
        *,
        msg_id: str | None = None,
        push_name: str | None = "Maria",
        from_jid: str | None = None,
        from_me: bool = False,
        event: str = "message",
        session: str | None = None,
    ) -> dict[str, Any]:
        chat = from_jid or f"{from_phone}@c.us"
        frm, to = (self.me, chat) if from_me else (chat, self.me)
        short = msg_id or new_id()
        payload = {
            "id": f"{str(from_me).lower()}_{chat}_{short}",
            "timestamp": 1729500000,
            "from": frm,
            "fromMe": from_me,
            "source": "app",
            "to": to,
            "participant": None,
            "body": text,
            "hasMedia": False,
            "media": None,
            "ack": 1,
            "ackName": "SERVER",
            "replyTo": None,
            "vCards": [],
            "_data": self._name_data(push_name),
        }
        return self.envelope(event, payload, session)

    def inbound_media(
        self,
        from_phone: str,
        *,
        mimetype: str = "image/jpeg",
        url: str | None = "http://localhost:3000/api/files/x.jpg",
        filename: str | None = None,
        caption: str | None = None,
        msg_id: str | None = None,
        push_name: str | None = "Maria",
        session: str | None = None,
    ) -> dict[str, Any]:
        envelope = self.inbound_text(
            from_phone, caption or "", msg_id=msg_id, push_name=push_name, session=session
        )
        media = (
            None
            if url is None
            else {"url": url, "mimetype": mimetype, "filename": filename, "error": None}
        )
        envelope["payload"] |= {"body": caption, "hasMedia": True, "media": media}
        return envelope

    def ack(
        self, msg_id: str, ack: int, *, chat: str = "5511987654321@c.us", session: str | None = None
    ) -> dict[str, Any]:
        names = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
        ident = msg_id if msg_id.startswith(("true_", "false_")) else f"true_{chat}_{msg_id}"
        payload = {
            "id": ident,
            "from": chat,
            "participant": None,
            "fromMe": True,
            "ack": ack,
            "ackName": names.get(ack, "UNKNOWN"),
        }
        return self.envelope("message.ack", payload, session)

    def connection(
        self, status: str, *, shape: Literal["docs", "source"] = "docs", session: str | None = None
    ) -> dict[str, Any]:
        name = session or self.session
        if shape == "source":
            payload: dict[str, Any] = {"name": name, "status": status}
        else:
            payload = {
                "status": status,
                "statuses": [{"status": "STARTING", "timestamp": 1741249700000}],
                "data": None,
            }
        return self.envelope("session.status", payload, session)

    def qr(self, *, session: str | None = None) -> dict[str, Any]:
        """WAHA announces a new QR as session.status SCAN_QR_CODE; the image is fetched."""
        return self.connection("SCAN_QR_CODE", session=session)
