"""Shared fixtures for provider tests: an httpx client and a webhook receiver that runs a
provider's verify + parse the way webhooks.py will, so fakes' deliveries are checked end to end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from atende.providers.base import (
    MalformedPayload,
    Provider,
    SessionConfig,
    WebhookAuthError,
    WebhookItem,
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@dataclass
class Receiver:
    """Atende's webhook endpoint in miniature: 401 bad auth, 400 malformed, 500 when told to."""

    provider: Provider
    session: SessionConfig
    fail_first: int = 0
    attempts: int = 0
    items: list[WebhookItem] = field(default_factory=list)

    async def handle(self, request: Request) -> JSONResponse:
        self.attempts += 1
        if self.fail_first:
            self.fail_first -= 1
            return JSONResponse({"error": "busy"}, status_code=500)
        raw = await request.body()
        try:
            self.provider.verify(self.session, raw, request.headers)
            self.items.extend(self.provider.parse(json.loads(raw)))
        except WebhookAuthError as exc:
            return JSONResponse({"error": exc.reason}, status_code=401)
        except MalformedPayload as exc:
            return JSONResponse({"error": exc.reason}, status_code=400)
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.handle, methods=["POST"])])
