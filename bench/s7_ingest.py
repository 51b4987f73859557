"""S7: ingest saturation. 16 senders post distinct sandbox webhooks back to back, on SQLite and
on PostgreSQL; the baseline is the raw driver (aiosqlite / asyncpg, same database, same tables)
inserting the same message row and its event row in one transaction per webhook."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

from bench import loadgen
from bench.harness import (
    REPS,
    Row,
    Spec,
    atende_env,
    median,
    pg_database,
    pg_dsn,
    run_in_process,
    seed_tenant,
    sqlite_database,
    start_atende,
    webhook_spec,
)

CONCURRENCY = 16


def run(quick: bool) -> list[Row]:
    duration = 2.0 if quick else 6.0
    rows: list[Row] = []
    backends: tuple[tuple[str, Callable[[], AbstractContextManager[str]]], ...] = (
        ("SQLite", sqlite_database),
        ("PostgreSQL", pg_database),
    )
    for label, make_db in backends:
        atende: list[float] = []
        raw: list[float] = []
        errors = 0
        with make_db() as db:
            env = atende_env(db)
            tenant = seed_tenant(env)
            with start_atende(f"s7-atende-{label.lower()}", env) as server:
                load: Spec = {"concurrency": CONCURRENCY, "duration": duration}
                for rep in range(REPS):
                    out = run_in_process(
                        loadgen.webhook_saturation,
                        {**load, "trigger": webhook_spec(server, tenant)},
                    )
                    atende.append(float(out["rate"]))
                    errors += int(out["errors"])
                    conv, session = _conversation(db, tenant.tenant_id)
                    base: Spec = {
                        **load,
                        "tenant_id": tenant.tenant_id,
                        "conversation_id": conv,
                        "session_id": session,
                        "first_event_id": 10_000_000 * (rep + 1),
                    }
                    if label == "SQLite":
                        base |= {"driver": "sqlite", "path": db.split("///", 1)[1]}
                    else:
                        base |= {"driver": "postgresql", "dsn": pg_dsn(db), "pool": CONCURRENCY}
                    raw.append(float(run_in_process(loadgen.raw_insert, base)["rate"]))
        note = f"{errors} webhooks failed" if errors else ""
        rows.append(
            Row(
                "S7",
                f"webhooks stored per second, {label}, {CONCURRENCY} senders",
                "/s",
                median(atende),
                median(raw),
                "higher",
                f"raw {label} insert",
                note,
                samples={"atende": atende, "baseline": raw},
            )
        )
    return rows


def _conversation(database_url: str, tenant_id: str) -> tuple[str, str]:
    """Any conversation of the tenant (created by the webhooks) and its session."""
    sql = "SELECT id, session_id FROM conversations WHERE tenant_id = {} LIMIT 1"
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split("///", 1)[1]) as conn:
            found = conn.execute(sql.format("?"), (uuid.UUID(tenant_id).hex,)).fetchone()
        return str(uuid.UUID(found[0])), str(uuid.UUID(found[1]))

    async def query() -> tuple[str, str]:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn(database_url))
        try:
            row = await conn.fetchrow(sql.format("$1"), uuid.UUID(tenant_id))
        finally:
            await conn.close()
        assert row is not None
        return str(row[0]), str(row[1])

    return asyncio.run(query())
