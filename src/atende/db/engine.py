"""Engine and session factory for SQLite (WAL, busy timeout) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession
from sqlalchemy.pool import ConnectionPoolEntry

from atende.config import normalise_database_url

SQLITE_BEGIN_OPTION = "atende_sqlite_begin"
SQLITE_BUSY_TIMEOUT_MS = 10_000  # one writer at a time: wait for it rather than failing


def make_engine(url: str) -> AsyncEngine:
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine
    # No pool_pre_ping: it costs a round trip on every checkout, i.e. on every webhook. After a
    # PostgreSQL restart the first statement on a stale connection fails instead; SQLAlchemy
    # then invalidates the whole pool, so one request gets an error (a webhook's gateway retries
    # it) and the next ones get fresh connections. pool_recycle retires idle connections that a
    # firewall or pgbouncer may have cut.
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling is turned off so that `begin` below controls it.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Writers BEGIN IMMEDIATE: they take the write lock up front and queue on the busy timeout,
    # instead of one failing with "database is locked" when it upgrades from read to write.
    # Readers (the `reader` session factory) BEGIN DEFERRED: under WAL they never wait.
    mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def make_reader(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for read-only work: on SQLite they never take the write lock."""
    readonly = engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})
    return async_sessionmaker(readonly, expire_on_commit=False)
