"""Apply Alembic migrations programmatically (used by `atende migrate` and at `serve` start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from atende.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade(url: str) -> None:
    """Bring the database at `url` to the latest schema."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
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
