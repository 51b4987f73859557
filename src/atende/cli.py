"""The `atende` command line (Typer). Every command honours the ATENDE_* settings."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import httpx
import typer

from atende.config import Settings, new_secret
from atende.context import AppContext, build_context
from atende.db import migrate as db_migrate
from atende.errors import AtendeError, InvalidInput
from atende.services import accounts
from atende.services import sessions as sessions_svc
from atende.services.auth import mint_token
from atende.services.passwords import new_password
from atende.services.render import webhook_path
from atende.types import ProviderName, Role

app = typer.Typer(help="Atende: a real-time WhatsApp customer-service inbox.", no_args_is_help=True)
T = TypeVar("T")
DEMO_EMAIL = "admin@demo.atende"
DEMO_PASSWORD = "atende-demo"  # printed at first start; change it in production
DEMO_SESSION = "demo"


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        typer.secho(f"Configuration error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def _run(work: Callable[[AppContext], Awaitable[T]], migrate_first: bool = True) -> T:
    settings = _settings()

    async def main() -> T:
        if migrate_first:
            await db_migrate.upgrade(settings.database_url, settings.secret_key)
        ctx = build_context(settings)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    try:
        return asyncio.run(main())
    except AtendeError as exc:
        typer.secho(f"Error ({exc.error_code}): {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def _emit(obj: dict[str, Any], as_json: bool, human: str) -> None:
    typer.echo(json.dumps(obj) if as_json else human)


@app.command()
def migrate() -> None:
    """Apply database migrations (also done at `serve` start)."""
    settings = _settings()
    asyncio.run(db_migrate.upgrade(settings.database_url, settings.secret_key))
    typer.echo("Database is up to date.")


@app.command("create-tenant")
def create_tenant(
    name: Annotated[str, typer.Option(help="The business's name")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Create a tenant (a business)."""
    tenant = _run(lambda ctx: accounts.create_tenant(ctx, name=name))
    _emit({"id": str(tenant.id), "name": tenant.name}, as_json, f"Tenant {tenant.id} created.")


@app.command("create-user")
def create_user(
    tenant: Annotated[str, typer.Option(help="Tenant id")],
    email: Annotated[str, typer.Option()],
    password: Annotated[str, typer.Option()],
    role: Annotated[Role, typer.Option()] = Role.AGENT,
    name: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Create an admin or agent of a tenant."""
    tenant_id = _uuid_arg(tenant, "--tenant")
    user = _run(
        lambda ctx: accounts.create_user(
            ctx, tenant_id=tenant_id, email=email, password=password, role=role, name=name
        )
    )
    _emit(
        {
            "id": str(user.id),
            "tenant_id": str(user.tenant_id),
            "email": user.email,
            "role": user.role,
        },
        as_json,
        f"User {user.id} ({user.email}, {user.role}) created.",
    )


@app.command("create-session")
def create_session(
    tenant: Annotated[str, typer.Option(help="Tenant id")],
    provider: Annotated[ProviderName, typer.Option()],
    name: Annotated[
        str, typer.Option(help="Gateway instance/session name (Cloud: phone_number_id)")
    ],
    base_url: Annotated[str | None, typer.Option(help="Gateway base URL")] = None,
    api_key: Annotated[str | None, typer.Option(help="Gateway API key / access token")] = None,
    webhook_secret: Annotated[
        str | None, typer.Option(help="Webhook key, HMAC key or Cloud app secret")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="Provider option KEY=VALUE (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Connect a tenant to a WhatsApp gateway session."""
    tenant_id = _uuid_arg(tenant, "--tenant")
    options = dict(item.split("=", 1) for item in (option or []) if "=" in item)
    row = _run(
        lambda ctx: sessions_svc.create_session(
            ctx,
            tenant_id=tenant_id,
            provider=provider,
            name=name,
            base_url=base_url,
            api_key=api_key,
            webhook_secret=webhook_secret,
            options=options,
        )
    )
    settings = _settings()
    made = {
        "id": str(row.id),
        "tenant_id": str(row.tenant_id),
        "provider": row.provider,
        "name": row.name,
        "state": row.state,
        "webhook_url": sessions_svc.webhook_url(settings, row),
    }
    lines = [
        f"Session {row.id} ({row.provider}/{row.name}) created, state {row.state}.",
        f"  webhook URL    : {made['webhook_url']}",
    ]
    if not webhook_secret:
        # Generated, and shown this once: whoever sets the gateway up by hand needs it.
        made["webhook_secret"] = row.webhook_secret or ""
        lines.append(f"  webhook secret : {row.webhook_secret}   (generated; shown only now)")
    _emit(made, as_json, "\n".join(lines))


@app.command()
def token(
    user: Annotated[str, typer.Option(help="User id")],
    ttl_secs: Annotated[int | None, typer.Option(help="Lifetime in seconds")] = None,
) -> None:
    """Print an access JWT for a user (for scripts and tests)."""
    user_id = _uuid_arg(user, "--user")

    async def work(ctx: AppContext) -> str:
        found = await accounts.get_user(ctx, user_id)
        return mint_token(
            ctx.settings,
            user_id=found.id,
            tenant_id=found.tenant_id,
            role=found.role,
            ttl_secs=ttl_secs,
            version=found.token_version,
        )

    typer.echo(_run(work))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run Atende (migrates first; seeds a demo tenant on an empty database)."""
    import uvicorn

    from atende.app import create_app
    from atende.logs import log_config
    from atende.serving import server_config

    settings = _settings()
    logging.config.dictConfig(log_config())  # secrets redacted, httpx quiet (atende.logs)
    _say_generated_secrets(settings)
    asyncio.run(db_migrate.upgrade(settings.database_url, settings.secret_key))
    if settings.demo_on:
        _run(_seed_demo, migrate_first=False)
    else:
        if settings.create_demo and not settings.is_development:
            typer.secho(
                "ATENDE_CREATE_DEMO is ignored outside development (its password is public).",
                fg=typer.colors.YELLOW,
                err=True,
            )
        _run(_hint_first_admin, migrate_first=False)
    bind_host = host or settings.host
    bind_port = port or settings.port
    typer.echo(
        f"Atende listening on http://{bind_host}:{bind_port}  (web inbox at /, API docs at /docs)"
    )
    config = server_config(
        create_app(settings),
        settings,
        host=bind_host,
        port=bind_port,
        log_level="info",
        log_config=None,  # configured above
        ws=settings.ws_impl,
        proxy_headers=True,
    )
    uvicorn.Server(config).run()


def _say_generated_secrets(settings: Settings) -> None:
    for env_name, path in settings.generated_secrets:
        typer.secho(
            f"Generated a random {env_name} and kept it in {path} (mode 0600). Keep that file; "
            f"instances that share a database must share it too (or set {env_name}).",
            fg=typer.colors.YELLOW,
            err=True,
        )


async def _hint_first_admin(ctx: AppContext) -> None:
    if await accounts.count_tenants(ctx) == 0:
        typer.secho(
            "No tenant yet. Create the first one and its administrator with:\n"
            '  atende init --tenant-name "Sua Clínica" --email voce@clinica.com.br',
            fg=typer.colors.YELLOW,
            err=True,
        )


@app.command()
def init(
    tenant_name: Annotated[str, typer.Option(help="The business's name")],
    email: Annotated[str, typer.Option(help="The first administrator's e-mail")],
    name: Annotated[str | None, typer.Option(help="The administrator's name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Create the first tenant and its administrator, with a one-time random password."""
    password = new_password()

    async def work(ctx: AppContext) -> tuple[Any, Any]:
        if await accounts.count_tenants(ctx) > 0:
            raise InvalidInput(
                "This database already has tenants; use create-tenant and create-user"
            )
        tenant = await accounts.create_tenant(ctx, name=tenant_name)
        admin = await accounts.create_user(
            ctx, tenant_id=tenant.id, email=email, password=password, role=Role.ADMIN, name=name
        )
        return tenant, admin

    tenant, admin = _run(work)
    human = (
        f"Tenant {tenant.id} ({tenant.name}) and its administrator were created.\n"
        f"  log in as : {admin.email}\n"
        f"  password  : {password}   (shown only now: change it after logging in)"
    )
    payload = {
        "tenant_id": str(tenant.id),
        "user_id": str(admin.id),
        "email": admin.email,
        "password": password,
    }
    _emit(payload, as_json, human)


async def _seed_demo(ctx: AppContext) -> None:
    if await accounts.count_tenants(ctx) > 0:
        return
    tenant = await accounts.create_tenant(ctx, name="Demo")
    admin = await accounts.create_user(
        ctx,
        tenant_id=tenant.id,
        email=DEMO_EMAIL,
        password=DEMO_PASSWORD,
        role=Role.ADMIN,
        name="Admin",
    )
    await sessions_svc.create_session(
        ctx,
        tenant_id=tenant.id,
        provider=ProviderName.SANDBOX,
        name=DEMO_SESSION,
        webhook_secret=new_secret(),
    )
    # Development only (`Settings.demo_on`): a token on the console is a convenience there.
    jwt = mint_token(ctx.settings, user_id=admin.id, tenant_id=tenant.id, role=admin.role)
    typer.secho("\nA demo tenant was created on this empty database:", fg=typer.colors.GREEN)
    typer.echo(f"  tenant id : {tenant.id}")
    typer.echo(f"  log in as : {DEMO_EMAIL} / {DEMO_PASSWORD}")
    typer.echo(f"  token     : {jwt}")
    typer.echo(f"  try       : atende simulate --session {DEMO_SESSION}   (in another shell)\n")


@app.command()
def simulate(
    session: Annotated[str, typer.Option(help="Sandbox session name")] = DEMO_SESSION,
    messages: Annotated[int, typer.Option(min=1, help="How many messages")] = 1,
    rate: Annotated[float, typer.Option(min=0.01, help="Messages per second")] = 5.0,
    from_: Annotated[str, typer.Option("--from", help="Customer phone")] = "5511987654321",
    text: Annotated[str, typer.Option(help="Message text")] = "Olá! Preciso de ajuda.",
    url: Annotated[str | None, typer.Option(help="Atende's URL")] = None,
    secret: Annotated[str | None, typer.Option(help="Session webhook secret")] = None,
) -> None:
    """Play customers writing in through the running server's sandbox webhook."""
    settings = _settings()
    base = (url or settings.public_url).rstrip("/")
    path = "/api/webhooks/sandbox"
    if secret is None:
        row = _run(lambda ctx: sessions_svc.find_by_name(ctx, "sandbox", session))
        if row is None:
            typer.secho(f"No sandbox session named {session!r}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        secret, path = row.webhook_secret, webhook_path(row)
    failures = _post_messages(f"{base}{path}", session, messages, rate, from_, text, secret)
    typer.echo(f"Sent {messages - failures} of {messages} messages to {base}.")
    if failures:
        raise typer.Exit(1)


def _post_messages(
    url: str, session: str, count: int, rate: float, phone: str, text: str, secret: str | None
) -> int:
    headers = {"X-Webhook-Secret": secret} if secret else {}
    failures = 0
    interval = 1.0 / rate
    with (
        httpx.Client(timeout=10) as client,
        typer.progressbar(range(count), label="Simulating") as bar,
    ):
        for i in bar:
            started = time.monotonic()
            body = {
                "session": session,
                "from": phone,
                "push_name": "Cliente Simulado",
                "text": text if count == 1 else f"{text} ({i + 1})",
                "id": f"sim-{uuid.uuid4().hex}",
            }
            try:
                response = client.post(url, json=body, headers=headers)
                if response.status_code >= 300:
                    failures += 1
                    typer.secho(f"\n{response.status_code}: {response.text[:200]}", err=True)
            except httpx.HTTPError as exc:
                failures += 1
                typer.secho(f"\nCould not reach Atende: {exc}", fg=typer.colors.RED, err=True)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return failures


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="A short run (about 5 minutes)")] = False,
    only: Annotated[str | None, typer.Option(help="Scenarios to run, e.g. S1,S3")] = None,
) -> None:
    """Run the benchmarks in bench/ (a source checkout) against their bare baselines."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if not (root / "bench" / "__main__.py").is_file():
        typer.secho("bench/ is only in a source checkout of Atende", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    argv = [sys.executable, "-m", "bench", *(["--quick"] if quick else [])]
    argv += ["--only", only] if only else []
    raise typer.Exit(subprocess.call(argv, cwd=root))


def _uuid_arg(value: str, flag: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{flag} must be a UUID") from exc


def main() -> None:
    app()
