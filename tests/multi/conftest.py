"""Two real `atende serve` processes sharing one PostgreSQL database and one Redis.

The Redis is a private `redis-server` on a free port (never the system one), so the tests may stop
and restart it. Nothing waits blind: processes are awaited by polling their /health.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
import pytest_asyncio

from atende.context import build_context
from atende.db import migrate
from tests.harness import TEST_ENV, Server, Tenant, free_port, make_tenant, settings_for

PG_ADMIN_URL = os.environ.get(
    "ATENDE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = os.environ.get("ATENDE_TEST_BACKENDS", "sqlite,postgres").split(",")
START_SECS = 30.0


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, wait_secs: float = START_SECS
) -> None:
    """Poll an async predicate until it holds; fail with `what` after `wait_secs` seconds.
    Polling is the point: another process's state has no event to wait on."""
    try:
        async with asyncio.timeout(wait_secs):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


class RedisServer:
    """A private redis-server we may stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._spawn()

        async def answers() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await wait_until(answers, "redis-server to listen")

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class Instance:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def metric(self, name: str) -> float:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            text = (await http.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def _start_instance(name: str, env: dict[str, str], workdir: Path) -> Instance:
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "atende", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Instance(name, port, proc, log)


async def _healthy(instance: Instance) -> None:
    async def up() -> bool:
        if instance.proc.poll() is not None:
            pytest.fail(f"instance {instance.name} exited:\n{instance.log_tail()}")
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                return (await http.get(f"{instance.base_url}/health")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(up, f"instance {instance.name} to answer /health")


@dataclass
class Cluster:
    a: Instance
    b: Instance
    redis: RedisServer
    admin_server: Server  # an in-test context on the same database, to create tenants

    def on(self, tenant: Tenant, instance: Instance) -> Tenant:
        """The same tenant, reached through one instance."""
        server = dataclasses.replace(
            tenant.server, base_url=instance.base_url, ws_base=instance.ws_base
        )
        return dataclasses.replace(tenant, server=server)

    async def new_tenant(self) -> Tenant:
        return await make_tenant(self.admin_server)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("multi")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def running_cluster(workdir: Path, **env: str) -> AsyncIterator[Cluster]:
    """Two instances on a fresh PostgreSQL database and a private Redis; `env` adds settings."""
    if "postgres" not in BACKENDS:
        pytest.skip("many instances need PostgreSQL")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    db_name = f"atende_multi_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    await conn.execute(f'CREATE DATABASE "{db_name}"')
    await conn.close()
    db_url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{db_name}"
    redis = RedisServer(workdir)
    instances: list[Instance] = []
    ctx = None
    try:
        await migrate.upgrade(db_url)  # once, before two processes would race to do it
        await redis.start()
        env = {
            **os.environ,
            **TEST_ENV,
            "ATENDE_DATABASE_URL": db_url,
            "ATENDE_REDIS_URL": redis.url,
            "ATENDE_CREATE_DEMO": "false",
            "ATENDE_RATE_LIMIT_PER_MINUTE": "100",
            "ATENDE_SANDBOX_DELIVERED_AFTER_MS": "20",
            "ATENDE_SANDBOX_READ_AFTER_MS": "40",
            "ATENDE_ALLOWED_ORIGINS": "http://inbox.example",
            **env,
        }
        instances = [_start_instance(n, env, workdir) for n in ("a", "b")]
        for instance in instances:
            await _healthy(instance)
        ctx = build_context(settings_for(db_url))
        admin_server = Server(
            ctx.settings,
            instances[0].base_url,
            instances[0].ws_base,
            SimpleNamespace(state=SimpleNamespace(ctx=ctx)),
        )
        yield Cluster(instances[0], instances[1], redis, admin_server)
    finally:
        for instance in instances:
            instance.proc.terminate()
        for instance in instances:
            try:
                instance.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                instance.proc.kill()
                instance.proc.wait()
        redis.stop()
        if ctx is not None:
            await ctx.close()
        conn = await asyncpg.connect(PG_ADMIN_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await conn.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(workdir: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(workdir) as running:
        yield running
