"""The `atende` command line as a user runs it: real processes, a real server, a real socket."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.harness import TEST_ENV, TEST_JWT_SECRET, WsClient, free_port, serve_until_healthy

COMMANDS = [
    "serve",
    "migrate",
    "create-tenant",
    "create-user",
    "create-session",
    "token",
    "simulate",
]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATENDE_")}
    env.update(
        {
            **TEST_ENV,
            "ATENDE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
            "ATENDE_DATA_DIR": str(tmp_path / "data"),
            "ATENDE_SANDBOX_DELIVERED_AFTER_MS": "10",
            "ATENDE_SANDBOX_READ_AFTER_MS": "20",
        }
    )
    return env


def atende(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atende", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    obj: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    assert obj["id"]
    return obj


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli_env: dict[str, str], command: str) -> None:
    result = atende(cli_env, command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_bad_input_gets_a_clear_error(cli_env: dict[str, str]) -> None:
    result = atende(
        cli_env,
        "create-user",
        "--tenant",
        "not-a-uuid",
        "--email",
        "a@b.c",
        "--password",
        "long-enough",
        "--role",
        "admin",
    )
    assert result.returncode != 0 and "--tenant must be a UUID" in result.stderr
    weak = {**cli_env, "ATENDE_ENVIRONMENT": "production", "ATENDE_JWT_SECRET": "change-me"}
    refused = atende(weak, "migrate")
    assert refused.returncode == 2 and "ATENDE_JWT_SECRET" in refused.stderr


@pytest_asyncio.fixture(loop_scope="session")
async def served(cli_env: dict[str, str]) -> AsyncIterator[tuple[dict[str, str], str]]:
    port = free_port()
    env = {
        **cli_env,
        "ATENDE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ATENDE_ENVIRONMENT": "development",  # the demo tenant exists only there
    }
    banner, proc = await serve_until_healthy(env, port)
    try:
        yield env, banner
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=20)


async def test_serve_prints_login_and_simulate_reaches_a_socket(
    served: tuple[dict[str, str], str],
) -> None:
    from websockets.asyncio.client import connect

    env, banner = served
    assert "admin@demo.atende / atende-demo" in banner
    token = banner.split("token     :")[1].split()[0]
    tenant_id = banner.split("tenant id :")[1].split()[0]
    ws_url = env["ATENDE_PUBLIC_URL"].replace("http", "ws")
    async with connect(f"{ws_url}/ws/chat?tenant_id={tenant_id}&token={token}") as ws:
        client = WsClient(ws)
        await client.expect("connected")
        sim = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "atende",
            "simulate",
            "--session",
            "demo",
            "--messages",
            "2",
            "--rate",
            "50",
            "--from",
            "5521999990000",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(sim.communicate(), timeout=60)
        assert sim.returncode == 0, output.decode()
        frames = await client.collect(2, "new_message")
    assert [f["phone_number"] for f in frames] == ["5521999990000"] * 2
    assert "Sent 2 of 2" in output.decode()


def test_create_commands_print_json_and_token_works(cli_env: dict[str, str]) -> None:
    tenant = as_json(atende(cli_env, "create-tenant", "--name", "Clínica", "--json"))
    user = as_json(
        atende(
            cli_env,
            "create-user",
            "--tenant",
            tenant["id"],
            "--email",
            "ana@clinica.test",
            "--password",
            "s3nha-forte",
            "--role",
            "agent",
            "--json",
        )
    )
    session = as_json(
        atende(
            cli_env,
            "create-session",
            "--tenant",
            tenant["id"],
            "--provider",
            "evolution",
            "--name",
            "loja-01",
            "--base-url",
            "http://evo.local",
            "--api-key",
            "k",
            "--option",
            "evolution_version=v1",
            "--json",
        )
    )
    assert user["role"] == "agent" and session["state"] == "disconnected"
    duplicate = atende(
        cli_env,
        "create-user",
        "--tenant",
        tenant["id"],
        "--email",
        "ana@clinica.test",
        "--password",
        "s3nha-forte",
        "--role",
        "agent",
    )
    assert duplicate.returncode == 1 and "CONFLICT" in duplicate.stderr
    token = atende(cli_env, "token", "--user", user["id"], "--ttl-secs", "60")
    assert token.returncode == 0
    import jwt

    claims = jwt.decode(
        token.stdout.strip(), TEST_JWT_SECRET, algorithms=["HS256"], audience="atende"
    )
    assert claims["sub"] == user["id"] and claims["tenant_id"] == tenant["id"]
    assert claims["exp"] - claims["iat"] == 60


def test_create_session_shows_the_generated_webhook_secret(cli_env: dict[str, str]) -> None:
    """Without --webhook-secret one is generated: printed once (and in --json), with the
    session's own webhook URL; a secret given on the command line is not echoed back."""
    tenant = as_json(atende(cli_env, "create-tenant", "--name", "Loja", "--json"))
    base = ["create-session", "--tenant", tenant["id"], "--provider", "waha"]
    base += ["--base-url", "http://waha.local", "--api-key", "k"]
    made = as_json(atende(cli_env, *base, "--name", "default", "--json"))
    assert len(made["webhook_secret"]) >= 24
    assert made["webhook_url"].startswith("http://127.0.0.1:8080/api/webhooks/waha/wh_")
    human = atende(cli_env, *base, "--name", "outra")
    assert human.returncode == 0, human.stderr
    secret_line = next(line for line in human.stdout.splitlines() if "webhook secret" in line)
    assert len(secret_line.split(":", 1)[1].split()[0]) >= 24
    assert "/api/webhooks/waha/wh_" in human.stdout
    given = atende(cli_env, *base, "--name", "terceira", "--webhook-secret", "meu-segredo-123")
    assert given.returncode == 0 and "meu-segredo-123" not in given.stdout
    assert "webhook secret" not in given.stdout
