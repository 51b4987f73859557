"""Fixtures: every test that takes `server` runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from atende.db import migrate
from tests.harness import Server, Tenant, make_tenant, run_server, settings_for

PG_ADMIN_URL = os.environ.get(
    "ATENDE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = os.environ.get("ATENDE_TEST_BACKENDS", "sqlite,postgres").split(",")


async def _create_pg_database() -> tuple[str, str]:
    name = f"atende_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if backend == "sqlite":
        path = Path(tmp_path_factory.mktemp("db")) / "atende.db"
        url = f"sqlite+aiosqlite:///{path}"
        await migrate.upgrade(url)
        yield url
        return
    name, url = await _create_pg_database()
    await migrate.upgrade(url)
    try:
        yield url
    finally:
        await _drop_pg_database(name)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def server(database_url: str) -> AsyncIterator[Server]:
    async with run_server(settings_for(database_url)) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(server: Server) -> Tenant:
    return await make_tenant(server)


@pytest_asyncio.fixture(loop_scope="session")
async def other_tenant(server: Server) -> Tenant:
    return await make_tenant(server, name="Other")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The chaos and abuse suite's one line per test (see tests/chaos/summary.py)."""
    from tests.chaos.summary import LINES

    if LINES:
        terminalreporter.section("chaos summary")
        for line in LINES:
            terminalreporter.write_line(line)
