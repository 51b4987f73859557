"""A real `atende serve` process that chaos tests can SIGKILL and start again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.harness import TEST_ENV, free_port

READY_SECS = 30.0


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run `atende <args> --json` and return its object."""
    result = subprocess.run(
        [sys.executable, "-m", "atende", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    obj: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return obj


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATENDE_")}
    env.update(
        {
            **TEST_ENV,
            "ATENDE_DATABASE_URL": database_url,
            "ATENDE_CREATE_DEMO": "false",
            "ATENDE_RATE_LIMIT_PER_MINUTE": "1000000",
            "ATENDE_RATE_LIMIT_PER_HOUR": "1000000",
        }
    )
    env.update(extra)
    return env


def cli_token(env: dict[str, str], user_id: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "atende", "token", "--user", user_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


class ServeProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "ATENDE_PUBLIC_URL": f"http://127.0.0.1:{self.port}"}
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "atende",
            "serve",
            "--port",
            str(self.port),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1
        await self.wait_healthy()

    async def wait_healthy(self) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http, asyncio.timeout(READY_SECS):
            while True:
                assert self.proc is not None and self.proc.returncode is None, self.tail()
                try:
                    if (await http.get(f"{self.base_url}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)  # polling a port that is not bound yet

    async def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing — what a crash or an OOM kill does."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
