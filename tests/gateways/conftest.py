"""Fixtures of the gateway suite: its own database and Atende per backend (so no other test
server's outbox can pick up these messages), and one running fake gateway + tenant per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from atende.config import Settings
from atende.db import migrate
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.fakes.server import FakeGateway
from tests.gateways.cases import CASES, KINDS, Case, open_case
from tests.harness import Server, run_server, settings_for

# Small numbers so that failure paths (retries, give-up, timeouts) finish in milliseconds.
GATEWAY_SETTINGS: dict[str, Any] = {
    "outbox_max_attempts": 3,
    "outbox_backoff_base_secs": 0.02,
    "outbox_backoff_max_secs": 0.1,
    "gateway_timeout_secs": 0.5,
}


@asynccontextmanager
async def fresh_database(backend: str, directory: Path) -> AsyncIterator[str]:
    """A new, migrated database of `backend`, dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / f'gw-{uuid.uuid4().hex[:8]}.db'}"
        await migrate.upgrade(url)
        yield url
        return
    name, url = await _create_pg_database()
    try:
        await migrate.upgrade(url)
        yield url
    finally:
        await _drop_pg_database(name)


def gateway_settings(database_url: str, **overrides: Any) -> Settings:
    return settings_for(database_url, **{**GATEWAY_SETTINGS, **overrides})


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def gw_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    async with (
        fresh_database(backend, tmp_path_factory.mktemp("gw")) as url,
        run_server(gateway_settings(url)) as running,
    ):
        yield running


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def gw_fakes() -> AsyncIterator[dict[str, FakeGateway]]:
    """One running fake per gateway kind, shared by the package's tests (each test gets its
    own session name on it and a reset record)."""
    async with AsyncExitStack() as stack:
        fakes: dict[str, FakeGateway] = {}
        for kind in KINDS:
            fake = CASES[kind].new_fake()
            await stack.enter_async_context(fake.running())
            fakes[kind] = fake
        yield fakes


@pytest_asyncio.fixture(loop_scope="session", params=KINDS)
async def case(
    request: pytest.FixtureRequest, gw_server: Server, gw_fakes: dict[str, FakeGateway]
) -> AsyncIterator[Case]:
    kind = str(request.param)
    async with open_case(kind, gw_server, fake=gw_fakes[kind]) as opened:
        yield opened


@pytest.fixture
def database_factory(
    backend: str, tmp_path: Path
) -> Callable[[], AbstractAsyncContextManager[str]]:
    """For tests that stop and start Atende on one database of their own."""
    return lambda: fresh_database(backend, tmp_path)
