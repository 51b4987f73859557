"""Apply Alembic migrations programmatically (used by `atende migrate` and at `serve` start)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from atende.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None, secret_key: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    # Data migrations that encrypt or decrypt stored secrets (0003) need the master key.
    cfg.attributes["secret_key"] = secret_key
    return cfg


async def upgrade(url: str, secret_key: str | None = None, revision: str = "head") -> None:
    """Bring the database at `url` to the latest schema (`secret_key`: ATENDE_SECRET_KEY,
    needed once there are stored secrets to encrypt)."""
    await _run(url, lambda c: command.upgrade(alembic_config(c, secret_key), revision))


async def downgrade(url: str, revision: str, secret_key: str | None = None) -> None:
    await _run(url, lambda c: command.downgrade(alembic_config(c, secret_key), revision))


async def _run(url: str, work: Callable[[Connection], None]) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(work)
    finally:
        await engine.dispose()


async def autogenerate(url: str, message: str) -> None:
    """Developer helper: write a new revision from the models' difference to `url`."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda c: command.revision(alembic_config(c), message=message, autogenerate=True)
            )
    finally:
        await engine.dispose()
