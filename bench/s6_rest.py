"""S6: REST on a big tenant (100k conversations, 1M messages; quick: 10k / 100k) vs a Starlette
hello route: p50/p99 of the conversation list and of a page of messages, 8 clients back to back.

The generator bulk-inserts with SQL (`INSERT ... SELECT generate_series`) into a fresh, migrated
PostgreSQL database: one contact and one open conversation per customer, nine messages per
conversation, and one "hot" conversation with the remaining tenth."""

from __future__ import annotations

import asyncio
import time
import uuid

from bench import loadgen
from bench.harness import (
    REPS,
    Row,
    Spec,
    Tenant,
    atende_env,
    median,
    pg_database,
    pg_dsn,
    run_in_process,
    seed_tenant,
    start_atende,
    start_baseline,
)

CONCURRENCY = 8

CONTACTS_SQL = """
INSERT INTO contacts (id, tenant_id, phone, name, push_name, first_name, last_name, source,
                      lead_status, score, created_at)
SELECT gen_random_uuid(), $1, '5511' || lpad(g::text, 9, '0'), NULL, 'Cliente ' || g, 'Lead',
       right(lpad(g::text, 4, '0'), 4), 'WHATSAPP', 'NEW', 50, now() - interval '30 days'
FROM generate_series(1, $2) AS g
"""
CONVERSATIONS_SQL = """
INSERT INTO conversations (id, tenant_id, contact_id, session_id, status, unread_count,
                           last_message, last_message_time, created_at, updated_at)
SELECT gen_random_uuid(), c.tenant_id, c.id, $2, 'active', 1, 'Olá, mensagem de ' || c.phone,
       now() - (row_number() OVER (ORDER BY c.phone)) * interval '1 second',
       c.created_at, now()
FROM contacts c WHERE c.tenant_id = $1
"""
MESSAGES_SQL = """
INSERT INTO messages (id, tenant_id, conversation_id, session_id, direction, sender_type,
                      message_type, text, status, whatsapp_message_id, push_name, created_at,
                      attempts)
SELECT gen_random_uuid(), v.tenant_id, v.id, v.session_id,
       CASE WHEN g % 2 = 0 THEN 'inbound' ELSE 'outbound' END,
       CASE WHEN g % 2 = 0 THEN 'contact' ELSE 'agent' END,
       'text', 'Mensagem ' || g || ' da conversa', 'read',
       'gen-' || v.n || '-' || g, 'Cliente', now() - interval '20 days' + g * interval '1 minute',
       0
FROM (SELECT id, tenant_id, session_id, row_number() OVER (ORDER BY id) AS n
      FROM conversations WHERE tenant_id = $1) AS v
CROSS JOIN generate_series(1, $2) AS g
"""
HOT_SQL = """
INSERT INTO messages (id, tenant_id, conversation_id, session_id, direction, sender_type,
                      message_type, text, status, whatsapp_message_id, push_name, created_at,
                      attempts)
SELECT gen_random_uuid(), $1, $2, $3, 'inbound', 'contact', 'text', 'Hot ' || g, 'read',
       'hot-' || g, 'Cliente', now() - interval '10 days' + g * interval '1 second', 0
FROM generate_series(1, $4) AS g
"""


def generate(database_url: str, tenant: Tenant, conversations: int, messages: int) -> str:
    """Fill the tenant; returns the id of the hot conversation."""

    async def work() -> str:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn(database_url))
        try:
            tid = uuid.UUID(tenant.tenant_id)
            session_id = await conn.fetchval(
                "SELECT id FROM whatsapp_sessions WHERE tenant_id = $1", tid
            )
            await conn.execute(CONTACTS_SQL, tid, conversations)
            await conn.execute(CONVERSATIONS_SQL, tid, session_id)
            per_conv = max(1, (messages * 9 // 10) // conversations)
            await conn.execute(MESSAGES_SQL, tid, per_conv)
            hot = await conn.fetchval(
                "SELECT id FROM conversations WHERE tenant_id = $1 "
                "ORDER BY last_message_time DESC LIMIT 1",
                tid,
            )
            await conn.execute(HOT_SQL, tid, hot, session_id, messages - per_conv * conversations)
            await conn.execute("ANALYZE")
            return str(hot)
        finally:
            await conn.close()

    return asyncio.run(work())


def run(quick: bool) -> list[Row]:
    conversations, messages = (10_000, 100_000) if quick else (100_000, 1_000_000)
    duration = 2.0 if quick else 5.0
    results: dict[str, list[Spec]] = {"list": [], "page": [], "hello": []}
    with pg_database() as db:
        env = atende_env(db)
        tenant = seed_tenant(env)
        started = time.monotonic()
        hot = generate(db, tenant, conversations, messages)
        gen_secs = time.monotonic() - started
        with (
            start_atende("s6-atende", env) as server,
            start_baseline("starlette", "s6-starlette") as bare,
        ):
            auth = {"Authorization": f"Bearer {tenant.admin_token}"}
            targets: dict[str, Spec] = {
                "list": {"url": f"{server.url}/api/v1/conversations?limit=50", "headers": auth},
                "page": {
                    "url": f"{server.url}/api/v1/conversations/{hot}/messages?limit=50",
                    "headers": auth,
                },
                "hello": {"url": f"{bare.url}/hello"},
            }
            for _ in range(REPS):
                for name, target in targets.items():
                    results[name].append(
                        run_in_process(
                            loadgen.http_latency,
                            {**target, "concurrency": CONCURRENCY, "duration": duration},
                        )
                    )
    size = f"{conversations // 1000}k conversations / {messages // 1000}k messages"
    rows: list[Row] = []
    for name, label in (
        ("list", "GET /api/v1/conversations?limit=50"),
        ("page", "GET .../{id}/messages?limit=50"),
    ):
        errors = sum(int(r["errors"]) for r in results[name])
        for key, stat in (("p50_ms", "p50"), ("p99_ms", "p99")):
            xs = [float(r[key]) for r in results[name]]
            ys = [float(r[key]) for r in results["hello"]]
            note = f"{size}, generated in {gen_secs:.0f}s" if stat == "p50" else ""
            if errors:
                note += f"; {errors} error responses"
            rows.append(
                Row(
                    "S6",
                    f"{label} {stat}",
                    "ms",
                    median(xs),
                    median(ys),
                    "lower",
                    "Starlette hello",
                    note,
                    samples={"atende": xs, "baseline": ys},
                )
            )
    return rows
