"""A fake Meta Graph API (WhatsApp Cloud API) speaking the calls and payloads of PROVIDERS.md §3."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeGateway, json_of

_ids = itertools.count(1)


def new_id() -> str:
    return f"wamid.HBgLNTUxMTk4NzY1NDMyMRUCABEYEjA{next(_ids):010d}"


def _error(status: int, message: str, code: int, kind: str = "OAuthException") -> JSONResponse:
    error = {"message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEf"}
    return JSONResponse({"error": error}, status_code=status)


@dataclass
class FakeCloud(FakeGateway):
    api_key: str = "EAAG-access-token"
    app_secret: str | None = None  # signs deliveries with X-Hub-Signature-256, when set
    phone_number_id: str = "106540352242922"
    version: str = "v21.0"
    wa_ids: dict[str, str] = field(default_factory=dict)  # input digits → wa_id (Brazil's 9)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def unauthorized(self) -> Response:
        return _error(401, "Invalid OAuth access token - Cannot parse access token", 190)

    def webhook_headers(self, raw_body: bytes) -> dict[str, str]:
        if not self.app_secret:
            return {}
        digest = hmac.new(self.app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
        return {"X-Hub-Signature-256": f"sha256={digest}"}

    def add_media(self, media_id: str, data: bytes, mimetype: str) -> None:
        self.media[media_id] = (data, mimetype)

    def routes(self) -> list[Route]:
        return [
            Route("/media-download/{media_id}", self._download, methods=["GET"]),
            Route("/{version}/{pnid}/messages", self._send, methods=["POST"]),
            Route("/{version}/{node}", self._node, methods=["GET"]),
        ]

    async def _send(self, request: Request) -> Response:
        if request.path_params["pnid"] != self.phone_number_id:
            return _error(400, "Unsupported post request.", 100, "GraphMethodException")
        body = await json_of(request)
        to = str(body.get("to", ""))
        digits = to.lstrip("+")
        if digits in self.unknown_numbers:
            return _error(400, "(#131030) Recipient phone number not in allowed list", 131030)
        wa_id = self.wa_ids.get(digits, digits)
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": wa_id}],
                "messages": [{"id": new_id()}],
            }
        )

    async def _node(self, request: Request) -> Response:
        node = request.path_params["node"]
        if node == self.phone_number_id:
            return JSONResponse(
                {
                    "verified_name": "Loja",
                    "display_phone_number": "+55 11 99999-0000",
                    "quality_rating": "GREEN",
                    "id": node,
                }
            )
        if node in self.media:
            data, mimetype = self.media[node]
            return JSONResponse(
                {
                    "url": f"{self.base_url}/media-download/{node}?ext=1&hash=abc",
                    "mime_type": mimetype,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "file_size": len(data),
                    "id": node,
                    "messaging_product": "whatsapp",
                }
            )
        return _error(400, f"Unsupported get request. Object with ID '{node}' does not exist", 100)

    async def _download(self, request: Request) -> Response:
        media_id = request.path_params["media_id"]
        if media_id not in self.media:
            return _error(404, "Media not found", 100)
        data, mimetype = self.media[media_id]
        return Response(data, media_type=mimetype)

    # -- webhook payload builders (§3.3-§3.4) ----------------------------------------------------
    def envelope(self, value: dict[str, Any], phone_number_id: str | None = None) -> dict[str, Any]:
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550783881",
                "phone_number_id": phone_number_id or self.phone_number_id,
            },
            **value,
        }
        change = {"field": "messages", "value": value}
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [change]}],
        }

    def _message(
        self, from_phone: str, msg_id: str | None, push_name: str | None, extra: dict[str, Any]
    ) -> dict[str, Any]:
        message = {"from": from_phone, "id": msg_id or new_id(), "timestamp": "1749416383", **extra}
        contacts = [{"profile": {"name": push_name}, "wa_id": from_phone}] if push_name else []
        return self.envelope({"contacts": contacts, "messages": [message]})

    def inbound_text(
        self,
        from_phone: str,
        text: str,
        *,
        msg_id: str | None = None,
        push_name: str | None = "Sheena",
    ) -> dict[str, Any]:
        return self._message(
            from_phone, msg_id, push_name, {"type": "text", "text": {"body": text}}
        )

    def inbound_media(
        self,
        from_phone: str,
        kind: str,
        media_id: str,
        *,
        mime_type: str = "image/jpeg",
        caption: str | None = None,
        filename: str | None = None,
        msg_id: str | None = None,
        push_name: str | None = "Sheena",
    ) -> dict[str, Any]:
        node: dict[str, Any] = {"id": media_id, "mime_type": mime_type, "sha256": "c2hh"}
        if caption is not None:
            node["caption"] = caption
        if filename is not None:
            node["filename"] = filename
        return self._message(from_phone, msg_id, push_name, {"type": kind, kind: node})

    def ack(
        self, msg_id: str, status: str, *, recipient: str = "16505551234", error: bool = False
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": msg_id,
            "status": status,
            "timestamp": "1749416400",
            "recipient_id": recipient,
            "conversation": {"id": "conv-1", "origin": {"type": "service"}},
            "pricing": {"pricing_model": "CBP", "category": "service"},
        }
        if error:
            entry["errors"] = [
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "error_data": {"details": "Receiver is incapable of receiving this message"},
                }
            ]
        return self.envelope({"statuses": [entry]})

    def connection(self, state: str) -> dict[str, Any]:
        """Cloud API has no session webhooks; an account_update stands in (no phone_number_id)."""
        value = {"phone_number": "15550783881", "event": state}
        change = {"field": "account_update", "value": value}
        return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
