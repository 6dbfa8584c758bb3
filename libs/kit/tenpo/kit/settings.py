"""Settings shared by every service: environment variables, validated, safe outside development."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

DEV_PAGE_TOKEN_SECRET = "tenpo-development-page-token-secret"  # noqa: S105 - refused outside dev
DEV_CHANNEL_ASSERTION_SECRET = "tenpo-development-channel-assertion-secret"  # noqa: S105 - idem


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ServiceSettings(BaseSettings):
    """Base settings of a service. Subclasses set ``env_prefix`` (``CATALOG_``); every field
    may also come from a ``TENPO_``-prefixed variable shared by all services (the
    service-specific one wins), so one ``TENPO_NATS_URL`` serves the whole stack."""

    #: Services without a database (the gateway) set this to False in their subclass.
    requires_database: ClassVar[bool] = True

    service_name: str = "tenpo"
    environment: Environment = Environment.DEVELOPMENT

    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=0, ge=0, le=65535)
    #: Worker processes sharing the port (SO_REUSEPORT); 1 runs in-process.
    workers: int = Field(default=1, ge=1, le=64)
    #: Seconds health reports NOT_SERVING before the server stops taking calls (load balancers
    #: need a moment to notice), then seconds in-flight calls get to finish.
    shutdown_delay_seconds: float = Field(default=0.0, ge=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    #: Upper bound for any request message, in bytes.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: A connection must finish its HTTP/2 handshake within this (grpcio's default is 120 s,
    #: so idle sockets pile up), and one with no call on it is closed after the idle time
    #: (grpcio's default: never); clients reconnect on their next call.
    grpc_handshake_timeout_seconds: float = Field(default=10.0, gt=0)
    grpc_max_connection_idle_seconds: float = Field(default=300.0, gt=0)
    #: Open connections the gRPC server accepts at once; beyond it new ones are closed at
    #: once (the caller sees UNAVAILABLE and retries). Without a cap, idle HTTP/2
    #: connections held for the idle time above used up the process's file handles (and the
    #: gateway's HTTP side with them). Lowered to the file-handle limit less 256. 0: no cap.
    grpc_max_connections: int = Field(default=4096, ge=0)
    #: A call the server has not picked up within this (its event loop too busy to accept
    #: it) is cancelled by gRPC — the caller sees CANCELLED. grpcio's default, 30 s; tests
    #: that run several services and a thousand calls in one event loop raise it.
    grpc_max_unrequested_seconds: float = Field(default=30.0, gt=0)

    #: Calls that came straight through the gateway's edge (HAProxy; marked ``x-tenpo-edge``
    #: by it) skipped the gateway's per-principal token bucket: the call guard takes one
    #: here instead, per signed-in principal (services excepted), with the gateway's
    #: defaults. State per process, as the gateway's is per replica.
    edge_principal_rate: float = Field(default=50.0, gt=0)
    edge_principal_burst: float = Field(default=100.0, ge=1)

    database_url: str = ""
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    migrate_on_start: bool = True

    nats_url: str = "nats://127.0.0.1:4222"
    #: Replicas for the streams this service creates (3 in a NATS cluster).
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)

    #: JWKS of the token issuer (the customer service): a URL, or a file for local setups.
    auth_jwks_url: str = ""
    auth_jwks_file: Path | None = None
    auth_issuer: str = "https://auth.tenpo.local"
    auth_audience: str = "tenpo"
    auth_algorithms: list[str] = ["ES256", "RS256", "EdDSA"]

    page_token_secret: SecretStr = SecretStr(DEV_PAGE_TOKEN_SECRET)
    #: Shared by the gateway and every service: the gateway's proof of the channel it sets
    #: for anonymous callers (``tenpo.kit.auth.ChannelAssertion``). One value for the whole
    #: deployment, e.g. ``TENPO_CHANNEL_ASSERTION_SECRET``.
    channel_assertion_secret: SecretStr = SecretStr(DEV_CHANNEL_ASSERTION_SECRET)

    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")
    otel_exporter_otlp_endpoint: str = ""
    otel_console: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared = EnvSettingsSource(settings_cls, env_prefix="TENPO_")
        return init_settings, env_settings, shared, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Self:
        if self.environment is not Environment.PRODUCTION:
            return self
        problems: list[str] = []
        if self.page_token_secret.get_secret_value() == DEV_PAGE_TOKEN_SECRET:
            problems.append("page_token_secret is the development default")
        if len(self.page_token_secret.get_secret_value()) < 32:
            problems.append("page_token_secret must be at least 32 characters")
        assertion_secret = self.channel_assertion_secret.get_secret_value()
        if assertion_secret == DEV_CHANNEL_ASSERTION_SECRET:
            problems.append("channel_assertion_secret is the development default")
        if len(assertion_secret) < 32:
            problems.append("channel_assertion_secret must be at least 32 characters")
        if not (self.auth_jwks_url or self.auth_jwks_file):
            problems.append("auth_jwks_url (or auth_jwks_file) must be set")
        if self.auth_jwks_url and not self.auth_jwks_url.startswith("https://"):
            problems.append("auth_jwks_url must use https")
        if self.requires_database and not self.database_url:
            problems.append("database_url must be set")
        if self.log_format != "json":
            problems.append("log_format must be json")
        if problems:
            raise ValueError("unsafe settings for production: " + "; ".join(problems))
        return self

    def for_worker(self, **overrides: Any) -> Self:
        return self.model_copy(update=overrides)
