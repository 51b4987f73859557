"""secrets at rest: encrypt the gateway URL, API key and webhook secret of every session

Data only (the columns are Text since 0002). Needs the master key: `atende migrate` and
`serve` hand it over (`atende.db.migrate.upgrade(url, secret_key)`).

Revision ID: 0003_secrets_at_rest
Revises: 0002_security
Create Date: 2026-12-03 09:30:00
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op

from atende.vault import Vault, is_sealed

revision = "0003_secrets_at_rest"
down_revision = "0002_security"
branch_labels = None
depends_on = None

TABLE = "whatsapp_sessions"
COLUMNS = ("base_url", "api_key", "webhook_secret")


def _vault() -> Vault | None:
    key = context.config.attributes.get("secret_key")
    return Vault(key) if key else None


def _rewrite(change: Callable[[str, str], str | None]) -> None:
    """Apply `change(value, "table.column")` to every non-null secret; None = leave it."""
    table = sa.table(TABLE, sa.column("id", sa.Uuid()), *(sa.column(c, sa.Text()) for c in COLUMNS))
    bind = op.get_bind()
    for row in bind.execute(sa.select(table)).mappings().all():
        values = {}
        for column in COLUMNS:
            value = row[column]
            new = None if value is None else change(value, f"{TABLE}.{column}")
            if new is not None:
                values[column] = new
        if values:
            bind.execute(table.update().where(table.c.id == row["id"]).values(**values))


def _need(vault: Vault | None) -> Vault:
    if vault is None:
        raise RuntimeError(
            "encrypting stored gateway secrets needs ATENDE_SECRET_KEY: run `atende migrate`"
        )
    return vault


def upgrade() -> None:
    vault = _vault()
    _rewrite(lambda value, column: None if is_sealed(value) else _need(vault).seal(value, column))


def downgrade() -> None:
    vault = _vault()
    _rewrite(lambda value, column: _need(vault).open(value, column) if is_sealed(value) else None)
