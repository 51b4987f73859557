"""A fake Evolution API (v1.8 / v2.x) speaking the endpoints and payloads of PROVIDERS.md §1."""

from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import QR_PNG_BASE64, FakeGateway, json_of

Version = Literal["v1", "v2"]
QR_DATA_URL = f"data:image/png;base64,{QR_PNG_BASE64}"
_ids = itertools.count(1)


def new_id() -> str:
    return f"3EB0{next(_ids):012X}"


def _error(status: int, error: str, message: Any) -> JSONResponse:
    # src/exceptions/*.exception.ts shape
    return JSONResponse(
        {"status": status, "error": error, "response": {"message": message}}, status_code=status
    )


@dataclass
class FakeEvolution(FakeGateway):
    api_key: str = "evo-global-key"
    webhook_key: str | None = None  # sent as `apikey` header (v2 webhook.headers), when set
    instances: dict[str, str] = field(default_factory=dict)  # name → open|connecting|close
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # message id → file
    owner_jid: str = "5511999990000@s.whatsapp.net"
    instance: str = "loja-01"  # default instance of the payload builders

    def authorized(self, request: Request) -> bool:
        return request.headers.get("apikey") == self.api_key

    def unauthorized(self) -> Response:
        return _error(401, "Unauthorized", "Unauthorized")

    def webhook_headers(self, raw_body: bytes) -> dict[str, str]:
        return {"apikey": self.webhook_key} if self.webhook_key else {}

    def final_statuses(self) -> set[int]:
        return {400, 401, 403, 404, 422}  # Evolution does not retry these (§1.1)

    def add_media(self, message_id: str, data: bytes, mimetype: str) -> None:
        self.media[message_id] = (data, mimetype)

    def routes(self) -> list[Route]:
        return [
            Route("/instance/create", self._create, methods=["POST"]),
            Route("/instance/connectionState/{i}", self._state, methods=["GET"]),
            Route("/instance/connect/{i}", self._connect, methods=["GET"]),
            Route("/instance/logout/{i}", self._logout, methods=["DELETE"]),
            Route("/message/{kind}/{i}", self._send, methods=["POST"]),
            Route("/chat/whatsappNumbers/{i}", self._numbers, methods=["POST"]),
            Route("/chat/getBase64FromMediaMessage/{i}", self._base64, methods=["POST"]),
        ]

    def _missing(self, name: str) -> JSONResponse:
        return _error(404, "Not Found", [f'The "{name}" instance does not exist'])

    async def _create(self, request: Request) -> Response:
        body = await json_of(request)
        name = body.get("instanceName")
        if not isinstance(name, str) or not name:
            return _error(400, "Bad Request", ['instance requires property "instanceName"'])
        if name in self.instances:
            return _error(403, "Forbidden", [f'This name "{name}" is already in use.'])
        self.instances[name] = "connecting"
        instance = {"instanceName": name, "instanceId": f"id-{name}", "status": "created"}
        answer: dict[str, Any] = {"instance": instance, "hash": "instance-token"}
        if body.get("qrcode"):
            answer["qrcode"] = self._qrcode()
        return JSONResponse(answer, status_code=201)

    def _qrcode(self) -> dict[str, Any]:
        return {"pairingCode": None, "code": "2@fakecode", "base64": QR_DATA_URL, "count": 1}

    async def _state(self, request: Request) -> Response:
        name = request.path_params["i"]
        if name not in self.instances:
            return self._missing(name)
        return JSONResponse({"instance": {"instanceName": name, "state": self.instances[name]}})

    async def _connect(self, request: Request) -> Response:
        name = request.path_params["i"]
        if name not in self.instances:
            return self._missing(name)
        if self.instances[name] == "open":
            return JSONResponse({"instance": {"instanceName": name, "state": "open"}})
        self.instances[name] = "connecting"
        return JSONResponse(self._qrcode())

    async def _logout(self, request: Request) -> Response:
        name = request.path_params["i"]
        if name not in self.instances:
            return self._missing(name)
        if self.instances[name] != "open":
            return _error(400, "Bad Request", [f'The "{name}" instance is not connected'])
        self.instances[name] = "close"
        return JSONResponse(
            {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}
        )

    async def _send(self, request: Request) -> Response:
        name, kind = request.path_params["i"], request.path_params["kind"]
        if kind not in ("sendText", "sendMedia", "sendWhatsAppAudio"):
            return _error(404, "Not Found", ["Cannot POST"])
        if name not in self.instances:
            return self._missing(name)
        number = str((await json_of(request)).get("number", ""))
        if number in self.unknown_numbers:
            jid = f"{number}@s.whatsapp.net"
            return _error(400, "Bad Request", [{"jid": jid, "exists": False, "number": number}])
        jid = number if "@" in number else f"{number}@s.whatsapp.net"
        key = {"remoteJid": jid, "fromMe": True, "id": new_id()}
        return JSONResponse(
            {"key": key, "status": "PENDING", "messageTimestamp": int(time.time())}, status_code=201
        )

    async def _numbers(self, request: Request) -> Response:
        numbers = (await json_of(request)).get("numbers") or []
        return JSONResponse(
            [
                {"exists": n not in self.unknown_numbers, "jid": f"{n}@s.whatsapp.net", "number": n}
                for n in numbers
            ]
        )

    async def _base64(self, request: Request) -> Response:
        body = await json_of(request)
        message_id = ((body.get("message") or {}).get("key") or {}).get("id")
        if message_id not in self.media:
            return _error(400, "Bad Request", ["Message not found"])
        data, mimetype = self.media[message_id]
        return JSONResponse(
            {
                "mediaType": mimetype.split("/")[0],
                "fileName": None,
                "caption": None,
                "size": {"fileLength": len(data)},
                "mimetype": mimetype,
                "base64": base64.b64encode(data).decode(),
            },
            status_code=201,
        )

    # -- webhook payload builders (§1.1-§1.4) ----------------------------------------------------
    def envelope(self, event: str, data: Any, instance: str | None = None) -> dict[str, Any]:
        return {
            "event": event,
            "instance": instance or self.instance,
            "data": data,
            "destination": "http://atende.test/api/webhooks/whatsapp",
            "date_time": "2025-10-21T10:15:00.000Z",
            "sender": self.owner_jid,
            "server_url": self.base_url or "http://evo.test",
            "apikey": None,
        }

    def inbound_text(
        self,
        from_phone: str,
        text: str,
        *,
        msg_id: str | None = None,
        push_name: str = "Maria",
        version: Version = "v2",
        instance: str | None = None,
        from_me: bool = False,
        remote_jid: str | None = None,
        remote_jid_alt: str | None = None,
    ) -> dict[str, Any]:
        key: dict[str, Any] = {
            "remoteJid": remote_jid or f"{from_phone}@s.whatsapp.net",
            "fromMe": from_me,
            "id": msg_id or new_id(),
        }
        if remote_jid_alt:
            key |= {"remoteJidAlt": remote_jid_alt, "addressingMode": "lid"}
        if version == "v1":
            message = {"extendedTextMessage": {"text": text}}
            data = self._data_v1(
                instance or self.instance, key, push_name, message, "extendedTextMessage"
            )
        else:
            data = self._data_v2(key, push_name, {"conversation": text}, "conversation")
        return self.envelope("messages.upsert", data, instance)

    def inbound_media(
        self,
        from_phone: str,
        kind: Literal["image", "video", "audio", "document"],
        *,
        msg_id: str | None = None,
        caption: str | None = None,
        mimetype: str = "image/jpeg",
        file_name: str | None = None,
        push_name: str = "Maria",
        version: Version = "v2",
        instance: str | None = None,
        base64_data: str | None = None,
        media_url: str | None = None,
    ) -> dict[str, Any]:
        key = {
            "remoteJid": f"{from_phone}@s.whatsapp.net",
            "fromMe": False,
            "id": msg_id or new_id(),
        }
        node: dict[str, Any] = {
            "url": "https://mmg.whatsapp.net/o1/v/t62.7118-24/f1/m231/enc",
            "mimetype": mimetype,
            "mediaKey": "a2V5",
            "fileLength": "1234",
        }
        if caption is not None:
            node["caption"] = caption
        if file_name is not None:
            node["fileName"] = file_name
        message: dict[str, Any] = {f"{kind}Message": node}
        if kind == "document" and caption is not None and version == "v1":
            # v1 (and pre-2.2) wrap captioned documents
            message = {"documentWithCaptionMessage": {"message": {"documentMessage": node}}}
        if kind == "audio":
            node["ptt"] = True
        if base64_data is not None:
            message["base64"] = base64_data
        if media_url is not None:
            message["mediaUrl"] = media_url
        message_type = next(iter(message))
        if version == "v1":
            data = self._data_v1(instance or self.instance, key, push_name, message, message_type)
        else:
            data = self._data_v2(key, push_name, message, message_type)
        return self.envelope("messages.upsert", data, instance)

    def sent_echo(self, to_jid: str, text: str, msg_id: str) -> dict[str, Any]:
        """`send.message`: what Evolution posts for a message sent through its API (§1.2)."""
        key = {"remoteJid": to_jid, "fromMe": True, "id": msg_id}
        data = self._data_v2(key, "Você", {"conversation": text}, "conversation")
        return self.envelope("send.message", data)

    def _data_v2(
        self, key: dict[str, Any], push_name: str, message: Any, message_type: str
    ) -> dict[str, Any]:
        return {
            "key": key,
            "pushName": push_name,
            "status": "DELIVERY_ACK",
            "message": message,
            "contextInfo": None,
            "messageType": message_type,
            "messageTimestamp": 1729500000,
            "instanceId": "b1c2-uuid",
            "source": "android",
        }

    def _data_v1(
        self, instance: str, key: dict[str, Any], push_name: str, message: Any, message_type: str
    ) -> dict[str, Any]:
        return {
            "key": key,
            "pushName": push_name,
            "message": message,
            "contextInfo": None,
            "messageType": message_type,
            "messageTimestamp": 1729500000,
            "owner": instance,
            "source": "android",
        }

    def ack(
        self,
        msg_id: str,
        status: str | int,
        *,
        version: Version = "v2",
        instance: str | None = None,
    ) -> dict[str, Any]:
        remote = "5511987654321@s.whatsapp.net"
        if version == "v1":
            data: dict[str, Any] = {
                "remoteJid": remote,
                "fromMe": True,
                "id": msg_id,
                "participant": None,
                "status": status,
                "datetime": 1729500000000,
                "owner": instance or self.instance,
            }
        else:
            data = {
                "keyId": msg_id,
                "remoteJid": remote,
                "fromMe": True,
                "participant": None,
                "status": status,
                "pollUpdates": None,
                "instanceId": "b1c2-uuid",
                "messageId": "db-row-id",
            }
        return self.envelope("messages.update", data, instance)

    def connection(
        self, state: str, *, status_reason: int = 200, instance: str | None = None
    ) -> dict[str, Any]:
        data = {
            "instance": instance or self.instance,
            "wuid": self.owner_jid,
            "profileName": "Loja",
            "profilePictureUrl": None,
            "state": state,
            "statusReason": status_reason,
        }
        return self.envelope("connection.update", data, instance)

    def qr(self, base64_url: str = QR_DATA_URL, *, instance: str | None = None) -> dict[str, Any]:
        qrcode = {
            "instance": instance or self.instance,
            "pairingCode": None,
            "code": "2@fake",
            "base64": base64_url,
        }
        return self.envelope("qrcode.updated", {"qrcode": qrcode}, instance)
