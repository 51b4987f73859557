"""security: token versions, refresh tokens, per-tenant session names, webhook tokens

Revision ID: 0002_security
Revises: 4975c2497e06
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002_security"
down_revision = "4975c2497e06"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
        )

    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_refresh_tokens_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_refresh_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
    )
    op.create_index("ix_refresh_tokens_family", "refresh_tokens", ["family_id"])
    op.create_index("ix_refresh_tokens_user", "refresh_tokens", ["user_id"])
    op.create_index("ix_refresh_tokens_expires", "refresh_tokens", ["expires_at"])

    op.add_column("whatsapp_sessions", sa.Column("webhook_token", sa.String(64), nullable=True))
    sessions = sa.table("whatsapp_sessions", sa.column("id", sa.Uuid()), sa.column("webhook_token"))
    bind = op.get_bind()
    for (session_id,) in bind.execute(sa.select(sessions.c.id)).all():
        bind.execute(
            sessions.update()
            .where(sessions.c.id == session_id)
            .values(webhook_token="wh_" + secrets.token_urlsafe(24))
        )
    with op.batch_alter_table("whatsapp_sessions") as batch:
        batch.alter_column("webhook_token", existing_type=sa.String(64), nullable=False)
        batch.alter_column("base_url", existing_type=sa.String(500), type_=sa.Text())
        batch.alter_column("api_key", existing_type=sa.String(500), type_=sa.Text())
        batch.alter_column("webhook_secret", existing_type=sa.String(500), type_=sa.Text())
        batch.drop_constraint("uq_whatsapp_sessions_provider_name", type_="unique")
        batch.create_unique_constraint(
            "uq_whatsapp_sessions_tenant_provider_name", ["tenant_id", "provider", "name"]
        )
        batch.create_unique_constraint("uq_whatsapp_sessions_webhook_token", ["webhook_token"])
        batch.create_index("ix_whatsapp_sessions_provider_name", ["provider", "name"])

    op.create_table(
        "webhook_events",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["whatsapp_sessions.id"],
            name=op.f("fk_webhook_events_session_id_whatsapp_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "event_id", name=op.f("pk_webhook_events")),
    )
    op.create_index("ix_webhook_events_created", "webhook_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_created", table_name="webhook_events")
    op.drop_table("webhook_events")
    with op.batch_alter_table("whatsapp_sessions") as batch:
        batch.drop_index("ix_whatsapp_sessions_provider_name")
        batch.drop_constraint("uq_whatsapp_sessions_webhook_token", type_="unique")
        batch.drop_constraint("uq_whatsapp_sessions_tenant_provider_name", type_="unique")
        batch.create_unique_constraint("uq_whatsapp_sessions_provider_name", ["provider", "name"])
        batch.drop_column("webhook_token")
    op.drop_index("ix_refresh_tokens_expires", table_name="refresh_tokens")
    op.drop_index("ix_refresh_tokens_user", table_name="refresh_tokens")
    op.drop_index("ix_refresh_tokens_family", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_version")
