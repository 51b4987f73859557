"""Issue 10 item 11: signed webhooks can not be replayed to change a session's state.

An old signed WAHA `session.status STOPPED` replayed used to disconnect a working session.
Now a state event whose signed timestamp (WAHA's envelope `timestamp`, inside the HMAC'd body)
is outside `webhook_timestamp_window_secs` is refused with 401 WEBHOOK_EXPIRED, and a state
event whose provider event id (`evt_…`, or the connection service's `id`) was applied before
changes nothing. Signatures are checked on the raw bytes before the body is parsed.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from atende.db.models import WhatsAppSession
from atende.services import sessions as sessions_svc
from atende.types import ProviderName, SessionState
from tests.fakes.waha import FakeWaha
from tests.harness import Tenant

MINUTE_MS = 60_000


async def _waha_session(tenant: Tenant) -> tuple[WhatsAppSession, FakeWaha]:
    name, secret = f"w-{uuid.uuid4().hex[:8]}", f"hmac-{uuid.uuid4().hex}"
    row = await sessions_svc.create_session(
        tenant.server.ctx,
        tenant_id=tenant.id,
        provider=ProviderName.WAHA,
        name=name,
        base_url="http://127.0.0.1:9",
        webhook_secret=secret,
    )
    await sessions_svc.set_state(tenant.server.ctx, row.id, state=SessionState.CONNECTED)
    return row, FakeWaha(session=name, hmac_key=secret)


def _signed(fake: FakeWaha, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"Content-Type": "application/json", **fake.webhook_headers(raw)}


async def _post(tenant: Tenant, url: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    async with tenant.http() as http:
        return await http.post(url, content=raw, headers=headers)


async def _state(tenant: Tenant, row: WhatsAppSession) -> str:
    async with tenant.server.ctx.reader() as session:
        found = await session.get(WhatsAppSession, row.id)
    assert found is not None
    return found.state


def _urls(row: WhatsAppSession) -> list[str]:
    return ["/api/webhooks/waha", f"/api/webhooks/waha/{row.webhook_token}"]


async def test_an_old_signed_stopped_is_refused(tenant: Tenant) -> None:
    row, fake = await _waha_session(tenant)
    stopped = fake.connection("STOPPED")
    stopped["timestamp"] = int(time.time() * 1000) - 10 * MINUTE_MS  # captured 10 minutes ago
    raw, headers = _signed(fake, stopped)
    for url in _urls(row):
        # The header timestamp is fresh (a replayer sets it), but it is not signed.
        answer = await _post(tenant, url, raw, headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error_code"] == "WEBHOOK_EXPIRED"
    future = fake.connection("STOPPED")
    future["timestamp"] = int(time.time() * 1000) + 10 * MINUTE_MS
    answer = await _post(tenant, _urls(row)[1], *_signed(fake, future))
    assert answer.status_code == 401 and answer.json()["error_code"] == "WEBHOOK_EXPIRED"
    assert await _state(tenant, row) == SessionState.CONNECTED.value


async def test_a_state_event_is_applied_once(tenant: Tenant) -> None:
    row, fake = await _waha_session(tenant)
    url = _urls(row)[1]
    stopped = _signed(fake, fake.connection("STOPPED"))
    first = await _post(tenant, url, *stopped)
    assert first.status_code == 200 and first.json()["connection"] == 1, first.text
    assert await _state(tenant, row) == SessionState.DISCONNECTED.value
    working = await _post(tenant, url, *_signed(fake, fake.connection("WORKING")))
    assert working.status_code == 200 and working.json()["connection"] == 1
    for replay_url in _urls(row):  # the same signed STOPPED again, within the window
        again = await _post(tenant, replay_url, *stopped)
        assert again.status_code == 200, again.text
        assert again.json()["connection"] == 0 and again.json()["duplicates"] == 1
    assert await _state(tenant, row) == SessionState.CONNECTED.value


async def test_old_messages_are_still_taken(tenant: Tenant) -> None:
    """Only state changes are refused when old: a message retried after an outage is true."""
    row, fake = await _waha_session(tenant)
    message = fake.inbound_text("5511987650002", "mandei ontem")
    message["timestamp"] = int(time.time() * 1000) - 24 * 60 * MINUTE_MS
    answer = await _post(tenant, _urls(row)[1], *_signed(fake, message))
    assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.text


async def test_signature_is_checked_before_the_body_is_parsed(tenant: Tenant) -> None:
    row, fake = await _waha_session(tenant)
    url = _urls(row)[1]
    not_json = b'{"event": "session.status", "payload": ' + b"[" * 50_000
    wrong = {**fake.webhook_headers(not_json), "X-Webhook-Hmac": "00" * 64}
    refused = await _post(tenant, url, not_json, wrong)
    assert refused.status_code == 401, refused.text  # not 400: the JSON was never read
    assert refused.json()["error_code"] == "UNAUTHORIZED"
    signed = await _post(tenant, url, not_json, fake.webhook_headers(not_json))
    assert signed.status_code == 400 and signed.json()["error_code"] == "INVALID_PAYLOAD"


async def test_connection_service_event_ids_are_applied_once(tenant: Tenant) -> None:
    name, key = f"cs-{uuid.uuid4().hex[:8]}", f"key-{uuid.uuid4().hex}"
    row = await sessions_svc.create_session(
        tenant.server.ctx,
        tenant_id=tenant.id,
        provider=ProviderName.CONNECTION_SERVICE,
        name=name,
        base_url="http://127.0.0.1:9",
        webhook_secret=key,
    )
    url = f"/api/webhooks/connection_service/{row.webhook_token}"
    headers = {"X-API-KEY": key}
    event = {"event": "connection", "session": name, "status": "disconnected", "id": "ev-1"}
    async with tenant.http() as http:
        up = {"event": "connection", "session": name, "status": "connected", "id": "ev-0"}
        assert (await http.post(url, json=up, headers=headers)).json()["connection"] == 1
        assert (await http.post(url, json=event, headers=headers)).json()["connection"] == 1
        back = {**up, "id": "ev-2"}
        assert (await http.post(url, json=back, headers=headers)).json()["connection"] == 1
        replay = await http.post(url, json=event, headers=headers)
    assert replay.status_code == 200 and replay.json()["duplicates"] == 1
    assert await _state(tenant, row) == SessionState.CONNECTED.value
