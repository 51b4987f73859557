"""Issue 10 item 12: gateway secrets are encrypted at rest and never shown.

Gateway API keys, webhook secrets and base URLs (which may carry `user:password@`) used to sit
in plaintext in `whatsapp_sessions`, and `base_url` was shown to anyone who could read a
session. Now the three columns hold AES-GCM ciphertext under a key derived from
ATENDE_SECRET_KEY (migration 0003 encrypts existing rows, its downgrade decrypts them); a
wrong key fails closed with a clear error; no answer carries userinfo, keys or secrets.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from atende.context import build_context
from atende.db import migrate
from atende.db.engine import make_engine
from atende.db.models import WhatsAppSession
from atende.services import sessions as sessions_svc
from atende.vault import SecretKeyMismatch
from tests.harness import Tenant, settings_for

API_KEY = "gw-api-key-0123456789"
SECRET = "webhook-secret-9876543210"
USERINFO = "operador:s3nha-do-gateway"
BASE_URL = f"http://{USERINFO}@127.0.0.1:9/evo"


async def _raw_columns(tenant: Tenant, session_id: uuid.UUID) -> tuple[str, str, str]:
    query = text("SELECT base_url, api_key, webhook_secret FROM whatsapp_sessions WHERE id = :id")
    async with tenant.server.ctx.engine.connect() as conn:
        row = (await conn.execute(query, {"id": session_id.hex})).one_or_none()
        if row is None:  # PostgreSQL keeps uuids as uuids
            row = (await conn.execute(query, {"id": session_id})).one()
    return row[0], row[1], row[2]


async def _evolution(tenant: Tenant) -> dict[str, str]:
    async with tenant.http() as http:
        made = await http.post(
            "/api/v1/whatsapp/sessions",
            json={
                "provider": "evolution",
                "name": f"evo-{uuid.uuid4().hex[:8]}",
                "base_url": BASE_URL,
                "api_key": API_KEY,
                "webhook_secret": SECRET,
            },
            headers=tenant.auth(),
        )
    assert made.status_code == 201, made.text
    body: dict[str, str] = made.json()
    return body


async def test_the_columns_hold_no_plaintext(tenant: Tenant) -> None:
    made = await _evolution(tenant)
    stored = await _raw_columns(tenant, uuid.UUID(made["id"]))
    for value, plain in zip(stored, (BASE_URL, API_KEY, SECRET), strict=True):
        assert value.startswith("enc:v1:"), value
        assert plain not in value and USERINFO not in value
    async with tenant.server.ctx.reader() as session:
        row = await session.get(WhatsAppSession, uuid.UUID(made["id"]))
    assert row is not None  # the rest of the code sees plaintext, as before
    assert (row.base_url, row.api_key, row.webhook_secret) == (BASE_URL, API_KEY, SECRET)


async def test_a_wrong_key_fails_closed(tenant: Tenant) -> None:
    made = await _evolution(tenant)
    other = settings_for(tenant.server.settings.database_url, secret_key=secrets.token_hex(32))
    ctx = build_context(other)
    try:
        with pytest.raises(SecretKeyMismatch, match="another ATENDE_SECRET_KEY"):
            await sessions_svc.check_secret_key(ctx)  # what `serve` does before it listens
        async with ctx.reader() as session:
            with pytest.raises(SecretKeyMismatch, match="ATENDE_SECRET_KEY"):
                await session.get(WhatsAppSession, uuid.UUID(made["id"]))
    finally:
        await ctx.close()


async def test_no_answer_carries_userinfo_keys_or_secrets(tenant: Tenant) -> None:
    made = await _evolution(tenant)
    assert made["base_url"] == "http://127.0.0.1:9/evo"
    async with tenant.chat_socket(tenant.agent_token) as agent, tenant.http() as http:
        answers = [
            await http.get("/api/v1/whatsapp/sessions", headers=tenant.auth()),
            await http.get(
                f"/api/whatsapp/status/{tenant.id}", headers=tenant.auth(tenant.agent_token)
            ),
            # Connecting fails (nothing listens on :9): the error must not carry them either.
            await http.post(
                f"/api/v1/whatsapp/sessions/{made['id']}/connect", headers=tenant.auth()
            ),
        ]
        await agent.expect("connection_status", lambda f: f.get("instance_id") == made["name"])
        await agent.send({"type": "ping"})
        await agent.expect("pong")
    said = [a.text for a in answers] + [str(f) for f in agent.seen] + [str(made)]
    for text_ in said:
        for secret in (USERINFO, "s3nha-do-gateway", API_KEY, SECRET):
            assert secret not in text_, text_


async def _plain_session(url: str) -> uuid.UUID:
    engine = make_engine(url)
    tenant_id, session_id = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC).isoformat()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 'T', :now)"),
                {"id": tenant_id.hex, "now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO whatsapp_sessions (id, tenant_id, provider, name, webhook_token,"
                    " base_url, api_key, webhook_secret, options, state, created_at, updated_at)"
                    " VALUES (:id, :t, 'evolution', 'loja', 'wh_x', :u, :k, :s, '{}',"
                    " 'disconnected', :now, :now)"
                ),
                {"id": session_id.hex, "t": tenant_id.hex, "u": BASE_URL, "k": API_KEY}
                | {"s": SECRET, "now": now},
            )
    finally:
        await engine.dispose()
    return session_id


async def _columns(url: str) -> tuple[str, str, str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            query = text("SELECT base_url, api_key, webhook_secret FROM whatsapp_sessions")
            row = (await conn.execute(query)).one()
    finally:
        await engine.dispose()
    return row[0], row[1], row[2]


async def test_the_migration_encrypts_and_its_downgrade_decrypts(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    key = secrets.token_hex(32)
    await migrate.upgrade(url, revision="0002_security")
    session_id = await _plain_session(url)
    with pytest.raises(RuntimeError, match="ATENDE_SECRET_KEY"):
        await migrate.upgrade(url)  # plaintext rows and no key: refuse, change nothing
    assert await _columns(url) == (BASE_URL, API_KEY, SECRET)

    await migrate.upgrade(url, key)
    sealed = await _columns(url)
    assert all(v.startswith("enc:v1:") for v in sealed)
    ctx = build_context(settings_for(url, secret_key=key))
    try:
        async with ctx.reader() as session:
            row = await session.get(WhatsAppSession, session_id)
    finally:
        await ctx.close()
    assert row is not None and (row.base_url, row.api_key, row.webhook_secret) == (
        BASE_URL,
        API_KEY,
        SECRET,
    )
    await migrate.downgrade(url, "0002_security", key)
    assert await _columns(url) == (BASE_URL, API_KEY, SECRET)
