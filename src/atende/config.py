"""Settings, built once and passed into `create_app(settings)` so tests can build their own."""

from __future__ import annotations

import ipaddress
import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import AliasChoices, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from atende import secretfile

DEFAULT_DATA_DIR = Path("data")
MiB = 1024 * 1024

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    # Where the SQLite default, generated secrets and (later) media live.
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("ATENDE_DATABASE_URL", "DATABASE_URL"),
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ATENDE_REDIS_URL", "REDIS_URL")
    )
    # Empty: a random secret is generated once and kept in `data_dir/secrets/` (mode 0600).
    # Several instances must share it: set it, or share the data directory.
    jwt_secret: str = Field(
        default="",
        validation_alias=AliasChoices("ATENDE_JWT_SECRET", "JWT_SECRET"),
    )
    # The master key that encrypts gateway keys and webhook secrets at rest; same rules.
    secret_key: str = Field(default="", validation_alias=AliasChoices("ATENDE_SECRET_KEY"))
    jwt_issuer: str = "atende"
    jwt_audience: str = "atende"
    jwt_access_ttl_secs: int = 3600
    jwt_refresh_ttl_secs: int = 30 * 24 * 3600
    # A used refresh token presented again within this many seconds is a client that lost the
    # answer (or two tabs racing), not a thief: it gets a new pair instead of ending sessions.
    refresh_reuse_grace_secs: float = 15.0
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

    # Logins: failures allowed per account and per client address in the window, then 429.
    login_failures_per_account: int = 10
    login_failures_per_ip: int = 30
    login_failure_window_secs: int = 15 * 60
    password_hash_concurrency: int = 2  # argon2 hashes at once (each takes ~64 MiB and a core)
    min_password_chars: int = 10

    # What a client may send: JSON bodies, webhooks (a session's own webhook URL may carry
    # inline base64 media, and is identified before its body is read), and how slowly.
    max_body_bytes: int = 1 * MiB
    # WhatsApp caps images, audio and video at 16 MB: base64 makes that ~21.4 MB, plus the JSON.
    max_webhook_body_bytes: int = 32 * MiB
    body_read_timeout_secs: float = 30.0
    header_read_timeout_secs: float = 10.0
    max_header_bytes: int = 64 * 1024  # the request line and headers together
    media_max_bytes: int = 100 * MiB  # WhatsApp's own limit for documents
    media_fetch_timeout_secs: float = 300.0  # a whole media download, however slow the gateway
    # Signed webhooks older than this are refused for state changes (session status).
    webhook_timestamp_window_secs: int = 300

    # Outbound requests (gateways, media) never reach internal addresses unless listed here,
    # e.g. a gateway on the same host: "127.0.0.1/32" or a private network "10.0.0.0/8".
    gateway_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # The refresh-token cookie's Secure flag; None: on, except for plain http on a host that
    # is not loopback (a browser would drop it there and every login would last an hour).
    cookie_secure: bool | None = None

    # Sandbox provider: off outside development unless enabled; how long the phone takes to ack.
    sandbox_enabled: bool | None = None
    sandbox_delivered_after_ms: int = 150
    sandbox_read_after_ms: int = 600

    # Outbox.
    outbox_max_attempts: int = 5
    outbox_backoff_base_secs: float = 1.0
    outbox_backoff_max_secs: float = 60.0
    gateway_timeout_secs: float = 15.0

    # `serve` seeds a demo tenant on an empty database, in development only.
    create_demo: bool | None = None

    # Secrets this process generated (name, path), for `serve` to say so once.
    _generated: list[tuple[str, Path]] = PrivateAttr(default_factory=list)

    @field_validator("allowed_origins", "gateway_allowed_networks", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("gateway_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"ATENDE_GATEWAY_ALLOWED_NETWORKS: {item!r} is not an address or network"
                ) from exc
        return value

    @model_validator(mode="after")
    def _defaults_and_safety(self) -> Settings:
        if not self.database_url:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'atende.db'}"
        self.database_url = normalise_database_url(self.database_url)
        self.jwt_secret = self._secret("ATENDE_JWT_SECRET", self.jwt_secret, "jwt_secret")
        self.secret_key = self._secret("ATENDE_SECRET_KEY", self.secret_key, "secret_key")
        return self

    def _secret(self, env_name: str, given: str, file_name: str) -> str:
        if given:
            secretfile.check_strength(env_name, given)
            return given
        path = self.data_dir / "secrets" / file_name
        value, created = secretfile.load_or_create(path)
        secretfile.check_strength(f"{env_name} (kept in {path})", value)
        if created:
            self._generated.append((env_name, path))
        return value

    @property
    def generated_secrets(self) -> list[tuple[str, Path]]:
        return list(self._generated)

    @cached_property
    def origins(self) -> frozenset[str]:
        """Origins allowed for CORS and WebSocket; the public URL is always one of them."""
        found = {o.rstrip("/") for o in self.allowed_origins}
        found.add(self.public_url.rstrip("/"))
        return frozenset(found)

    @cached_property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.gateway_allowed_networks)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @property
    def sandbox_on(self) -> bool:
        """The built-in sandbox WhatsApp: development's default, elsewhere only when asked."""
        return self.is_development if self.sandbox_enabled is None else self.sandbox_enabled

    @property
    def demo_on(self) -> bool:
        """A demo tenant with a published password: never outside development."""
        return self.is_development and self.create_demo is not False

    @property
    def refresh_cookie_secure(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        url = httpx.URL(self.public_url)
        return url.scheme == "https" or is_loopback_host(url.host)


def is_loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalise_database_url(url: str) -> str:
    """Pick the async driver for plain URLs (`postgresql://`, `sqlite:///`)."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def new_secret() -> str:
    return secretfile.new_secret()
