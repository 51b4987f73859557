"""Settings, built once and passed into `create_app(settings)` so tests can build their own."""

from __future__ import annotations

import json
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "atende-development-secret-change-me"  # only ever accepted in development
DEFAULT_DATA_DIR = Path("data")


def _split_list(value: Any) -> Any:
    """Accept a JSON array or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ATENDE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production", "test"] = "development"
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("ATENDE_DATABASE_URL", "DATABASE_URL"),
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ATENDE_REDIS_URL", "REDIS_URL")
    )
    jwt_secret: str = Field(
        default=DEV_JWT_SECRET,
        validation_alias=AliasChoices("ATENDE_JWT_SECRET", "JWT_SECRET"),
    )
    jwt_access_ttl_secs: int = 3600
    jwt_refresh_ttl_secs: int = 30 * 24 * 3600
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices(
            "ATENDE_ALLOWED_ORIGINS", "WEBSOCKET_ALLOWED_ORIGINS", "ALLOWED_ORIGINS"
        ),
    )
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        validation_alias=AliasChoices("ATENDE_PUBLIC_URL", "PUBLIC_URL"),
    )
    host: str = "127.0.0.1"
    port: int = 8080
    connection_service_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ATENDE_CONNECTION_SERVICE_URL", "CONNECTION_SERVICE_URL"),
    )
    connection_service_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ATENDE_CONNECTION_SERVICE_API_KEY", "CONNECTION_SERVICE_API_KEY"
        ),
    )

    # Real-time behaviour.
    ws_idle_timeout_secs: float = 300.0  # seed 000: inactivity timeout of 5 minutes
    ws_auth_timeout_secs: float = 10.0  # time allowed for a first-message `auth`
    ws_send_queue_max: int = 1000  # events queued for one slow socket before it is dropped
    ws_frames_per_sec: float = 20.0  # client frames per socket; far above any human agent
    ws_frames_burst: float = 40.0
    # uvicorn's WebSocket implementation. The sans-I/O one runs no tasks of its own per socket
    # (the older `websockets` protocol runs three), which is most of an idle socket's memory.
    ws_impl: Literal["websockets-sansio", "websockets", "wsproto"] = "websockets-sansio"
    event_retention_hours: float = 72.0  # how far back `last_event_id` can resume
    max_text_chars: int = 4096  # seed 000

    # Rate limits per tenant (seed 000).
    rate_limit_per_minute: int = 100
    rate_limit_per_hour: int = 1000

    # Sandbox provider: how long the simulated phone takes to ack.
    sandbox_delivered_after_ms: int = 150
    sandbox_read_after_ms: int = 600

    # Outbox.
    outbox_max_attempts: int = 5
    outbox_backoff_base_secs: float = 1.0
    outbox_backoff_max_secs: float = 60.0
    gateway_timeout_secs: float = 15.0

    create_demo: bool = True  # `serve` seeds a demo tenant on an empty database

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return _split_list(value)

    @model_validator(mode="after")
    def _defaults_and_safety(self) -> Settings:
        if not self.database_url:
            DEFAULT_DATA_DIR.mkdir(parents=True, exist_ok=True)
            self.database_url = f"sqlite+aiosqlite:///{DEFAULT_DATA_DIR / 'atende.db'}"
        self.database_url = normalise_database_url(self.database_url)
        if self.environment != "development" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError(
                "ATENDE_JWT_SECRET must be set to a secret of your own outside development"
            )
        if len(self.jwt_secret) < 16:
            raise ValueError("ATENDE_JWT_SECRET must be at least 16 characters long")
        return self

    @cached_property
    def origins(self) -> frozenset[str]:
        """Origins allowed for CORS and WebSocket; the public URL is always one of them."""
        found = {o.rstrip("/") for o in self.allowed_origins}
        found.add(self.public_url.rstrip("/"))
        return frozenset(found)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def normalise_database_url(url: str) -> str:
    """Pick the async driver for plain URLs (`postgresql://`, `sqlite:///`)."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def new_secret() -> str:
    return secrets.token_urlsafe(24)
