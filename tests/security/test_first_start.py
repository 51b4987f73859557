"""A fresh production install (issue 10, items 3 and 4): no secret set, nothing seeded.

`atende serve` with `ATENDE_ENVIRONMENT=production` and no secrets must start safely: it
generates its secrets into the data directory (0600) and says so, creates no demo account and
prints no token; `atende init` then makes the first administrator with a one-time password.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

from tests.harness import TEST_ALLOWED_NETWORKS, free_port, serve_until_healthy


def _production_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATENDE_")}
    env.update(
        {
            "ATENDE_ENVIRONMENT": "production",
            "ATENDE_DATA_DIR": str(tmp_path / "data"),
            "ATENDE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "ATENDE_GATEWAY_ALLOWED_NETWORKS": ",".join(TEST_ALLOWED_NETWORKS),
        }
    )
    return env


Proc = asyncio.subprocess.Process


async def _atende(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "atende",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _stop(proc: Proc) -> str:
    proc.terminate()
    rest, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    return rest.decode()


async def test_a_fresh_production_start_is_safe(tmp_path: Path) -> None:
    port = free_port()
    env = _production_env(tmp_path, port)
    banner, proc = await serve_until_healthy(env, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            demo = await http.post(
                "/api/v1/auth/login",
                json={"email": "admin@demo.atende", "password": "atende-demo"},
            )
            assert demo.status_code == 401  # no public demo account
            sandbox = await http.post("/api/webhooks/sandbox", json={"session": "demo"})
            assert sandbox.status_code == 404  # no sandbox outside development
    finally:
        banner += await _stop(proc)
    secrets_dir = tmp_path / "data" / "secrets"
    for name in ("jwt_secret", "secret_key"):
        path = secrets_dir / name
        assert path.stat().st_mode & 0o777 == 0o600
        assert f"Generated a random ATENDE_{name.upper()}" in banner
        assert str(path) in banner
        assert path.read_text().strip() not in banner  # said where, never what
    assert "eyJ" not in banner  # no token printed
    assert "atende-demo" not in banner and "atende init" in banner

    # The first administrator, with a one-time password that logs in.
    code, out, err = await _atende(
        env, "init", "--tenant-name", "Clínica", "--email", "dona@clinica.test", "--json"
    )
    assert code == 0, err
    created = json.loads(out.strip().splitlines()[-1])
    code, _, err = await _atende(env, "init", "--tenant-name", "Outra", "--email", "x@y.test")
    assert code == 1 and "already has tenants" in err

    banner, proc = await serve_until_healthy(env, port)
    try:
        assert "Generated" not in banner  # the kept secrets are reused
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            login = await http.post(
                "/api/v1/auth/login",
                json={"email": "dona@clinica.test", "password": created["password"]},
            )
            assert login.status_code == 200, login.text
            assert login.json()["user"]["role"] == "admin"
    finally:
        await _stop(proc)
