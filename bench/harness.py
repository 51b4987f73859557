"""Shared machinery: servers as subprocesses, throwaway databases, seeding, load generators in
their own process, statistics, and the one-line-per-figure result rows.

Everything here talks to 127.0.0.1 only, and every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LOG_DIR = BENCH_DIR / "results" / "logs"
NODE_DIR = BENCH_DIR / "node"
HOST = "127.0.0.1"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "bench-jwt-secret-4f9c2a7e1b8d3605-atende"
SECRET_KEY = "bench-master-key-93e1c07a5b2f4d68-atende"
REPS = 3  # every figure is the median of at least this many repetitions

Spec = dict[str, Any]
LoadFn = Callable[[Spec], Spec]


# Results --------------------------------------------------------------------------------------
@dataclass
class Row:
    """One printed line: a metric for Atende and for its baseline, measured in the same run."""

    scenario: str
    metric: str
    unit: str
    atende: float | None
    baseline: float | None
    better: str  # "lower" or "higher"
    baseline_name: str
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.atende is None or self.baseline is None or self.baseline == 0:
            return None
        return self.atende / self.baseline

    def line(self) -> str:
        ratio = "n/a" if self.ratio is None else f"x{self.ratio:.2f}"
        return (
            f"{self.scenario:<3} {self.metric:<44} atende {fmt(self.atende, self.unit):>12}  "
            f"{self.baseline_name} {fmt(self.baseline, self.unit):>12}  ratio {ratio:>7} "
            f"({self.better} is better){'  ' + self.note if self.note else ''}"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "KiB":
        return f"{value:.1f} KiB"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:.3g} {unit}"


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def na_row(scenario: str, metric: str, baseline_name: str, reason: str) -> Row:
    return Row(scenario, metric, "", None, None, "lower", baseline_name, note=f"n/a ({reason})")


# Processes ------------------------------------------------------------------------------------
def raise_nofile(wanted: int = 65536) -> int:
    """Raise the open-files limit (inherited by every server and load generator we start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Server:
    """A server subprocess with its output in bench/results/logs/, stopped by its own pid."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        env: dict[str, str] | None = None,
        health_path: str = "/health",
        cwd: Path | None = None,
    ) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd or ROOT),
        )
        try:
            wait_http(f"{self.url}{health_path}", timeout=60.0, proc=self.proc)
        except Exception:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_baseline(kind: str, name: str | None = None, extra: Sequence[str] = ()) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.baselines", kind, "--port", str(port), *extra]
    return Server(name or f"baseline-{kind}", argv, port)


def run_in_process(fn: LoadFn, spec: Spec, timeout: float = 600.0) -> Spec:
    """Run a load generator in its own (spawned) process and return its result."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, spec).result(timeout=timeout)


# Atende ---------------------------------------------------------------------------------------
@dataclass
class Tenant:
    tenant_id: str
    admin_id: str
    session: str
    secret: str
    admin_token: str
    agent_tokens: list[str]
    admin_email: str = ""
    admin_password: str = ""


BENCH_PASSWORD = "bench-password-123"


def atende_env(database_url: str, redis_url: str | None = None) -> dict[str, str]:
    env = {
        "ATENDE_DATABASE_URL": database_url,
        "ATENDE_JWT_SECRET": JWT_SECRET,
        "ATENDE_SECRET_KEY": SECRET_KEY,
        "ATENDE_ENVIRONMENT": "test",
        "ATENDE_SANDBOX_ENABLED": "true",
        "ATENDE_GATEWAY_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "ATENDE_CREATE_DEMO": "false",
        "ATENDE_RATE_LIMIT_PER_MINUTE": "100000000",
        "ATENDE_RATE_LIMIT_PER_HOUR": "1000000000",
        "ATENDE_SANDBOX_DELIVERED_AFTER_MS": "150",
        "ATENDE_SANDBOX_READ_AFTER_MS": "600",
        "ATENDE_WS_SEND_QUEUE_MAX": "100000",  # the load generator, not Atende, may lag
        "PYTHONUNBUFFERED": "1",
    }
    if redis_url:
        env["ATENDE_REDIS_URL"] = redis_url
    return env


def start_atende(name: str, env: dict[str, str]) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "atende", "serve", "--host", HOST, "--port", str(port)]
    return Server(name, argv, port, env={**env, "ATENDE_PUBLIC_URL": f"http://{HOST}:{port}"})


def _settings(database_url: str) -> Any:
    from atende.config import Settings

    return Settings(
        jwt_secret=JWT_SECRET,
        secret_key=SECRET_KEY,
        environment="test",
        database_url=database_url,
        sandbox_enabled=True,
    )


def mint(tenant_id: str, user_id: str, role: str) -> str:
    from atende.services.auth import mint_token

    return mint_token(
        _settings("sqlite:///:memory:"),
        user_id=uuid.UUID(user_id),
        tenant_id=uuid.UUID(tenant_id),
        role=role,
        ttl_secs=6 * 3600,
    )


def seed_tenant(env: dict[str, str], agents: int = 0) -> Tenant:
    """A tenant, an admin and a sandbox session through Atende's own services (what the CLI's
    create-tenant / create-user / create-session run), plus `agents` agents in bulk SQL."""
    from atende.context import build_context
    from atende.services import accounts
    from atende.services import sessions as sessions_svc
    from atende.types import ProviderName, Role

    tag = uuid.uuid4().hex[:8]
    secret = uuid.uuid4().hex
    session = f"bench-{tag}"

    async def work() -> tuple[str, str]:
        ctx = build_context(_settings(env["ATENDE_DATABASE_URL"]))
        try:
            tenant = await accounts.create_tenant(ctx, name=f"Bench {tag}")
            admin = await accounts.create_user(
                ctx,
                tenant_id=tenant.id,
                email=f"admin-{tag}@bench.atende",
                password=BENCH_PASSWORD,
                role=Role.ADMIN,
                name="Bench admin",
            )
            await sessions_svc.create_session(
                ctx,
                tenant_id=tenant.id,
                provider=ProviderName.SANDBOX,
                name=session,
                webhook_secret=secret,
            )
            return str(tenant.id), str(admin.id)
        finally:
            await ctx.close()

    tenant_id, admin_id = asyncio.run(work())
    agent_ids = bulk_agents(env["ATENDE_DATABASE_URL"], tenant_id, agents, tag)
    return Tenant(
        tenant_id=tenant_id,
        admin_id=admin_id,
        session=session,
        secret=secret,
        admin_token=mint(tenant_id, admin_id, "admin"),
        agent_tokens=[mint(tenant_id, uid, "agent") for uid in agent_ids],
        admin_email=f"admin-{tag}@bench.atende",
        admin_password=BENCH_PASSWORD,
    )


def bulk_agents(database_url: str, tenant_id: str, count: int, tag: str) -> list[str]:
    if count <= 0:
        return []
    ids = [str(uuid.uuid4()) for _ in range(count)]
    rows = [
        (uuid.UUID(uid), uuid.UUID(tenant_id), f"agent{i}-{tag}@bench.atende", f"Agent {i}")
        for i, uid in enumerate(ids)
    ]
    sql = (
        "INSERT INTO users (id, tenant_id, email, name, password_hash, role, is_active, "
        "created_at) VALUES ($1, $2, $3, $4, 'x', 'agent', true, now())"
    )

    async def insert() -> None:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn(database_url))
        try:
            await conn.executemany(sql, rows)
        finally:
            await conn.close()

    asyncio.run(insert())
    return ids


def tokens_for(tenant: Tenant, sockets: int, per_user: int = 3) -> list[str]:
    """One token per socket, at most `per_user` sockets per user (Socket.IO keeps three)."""
    pool = tenant.agent_tokens or [tenant.admin_token]
    needed = -(-sockets // per_user)
    if len(pool) < needed:
        raise RuntimeError(f"need {needed} agents for {sockets} sockets, have {len(pool)}")
    return [pool[i // per_user] for i in range(sockets)]


def webhook_spec(server: Server, tenant: Tenant) -> Spec:
    return {
        "url": f"{server.url}/api/webhooks/sandbox",
        "headers": {"X-Webhook-Secret": tenant.secret, "Content-Type": "application/json"},
        "session": tenant.session,
        "kind": "sandbox",
    }


def native_url(server: Server, tenant: Tenant, token: str) -> str:
    return f"{server.ws_url}/ws/chat?tenant_id={tenant.tenant_id}&token={token}"


def socketio_available(server: Server) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        reply = httpx.get(f"{server.url}/socket.io/?EIO=4&transport=polling", timeout=3.0)
        return reply.status_code == 200 and reply.text.startswith("0{")
    return False


# Databases ------------------------------------------------------------------------------------
def pg_dsn(url: str) -> str:
    """A plain libpq URL (asyncpg) from an SQLAlchemy one."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.contextmanager
def pg_database(prefix: str = "atende_bench") -> Iterator[str]:
    """A throwaway PostgreSQL database, migrated; dropped afterwards. Yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="atende-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    try:
        migrate(url)
        yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def migrate(database_url: str) -> None:
    from atende.db import migrate as db_migrate

    asyncio.run(db_migrate.upgrade(database_url))


# Node -----------------------------------------------------------------------------------------
def ensure_node_modules() -> str | None:
    """`npm ci` from the lock file on first use. Returns a reason when Node is unusable."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed"
    if not (NODE_DIR / "node_modules" / "socket.io").is_dir():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=str(NODE_DIR),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            return f"npm ci failed: {done.stderr.strip()[-200:]}"
    return None


def start_node_socketio() -> Server:
    port = free_port()
    return Server("baseline-node-socketio", ["node", "server.js", str(port)], port, cwd=NODE_DIR)
