"""Settings base class: environment variables with a per-service prefix, validated at start-up."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A secret containing one of these is a development placeholder, refused in production.
PLACEHOLDER_MARKERS = ("dev-only", "changeme", "placeholder", "example")


# libpq's sslmode names. Production needs "verify-full": "verify-ca" would accept any server holding a
# certificate from the CA, and managed PostgreSQL CAs sign many customers' servers.
SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    """Subclass per service and set ``model_config`` with the service's ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    kafka_bootstrap: str = "127.0.0.1:19092"
    # The service's runtime login: reads and writes its tables, owns nothing (README "PostgreSQL roles").
    database_url: SecretStr = SecretStr("postgresql://egov:egov-dev-only@127.0.0.1:55432/egov")
    # The role that owns the service's schema; when set, start-up migrates with it and grants the runtime
    # login what it needs. Unset, the runtime login migrates and owns the tables itself (single-role setups).
    database_owner_url: SecretStr | None = None
    # TLS to PostgreSQL. Off by default for the loopback cluster; production requires verify-full.
    database_sslmode: SslMode = "disable"
    # The CA that signs the server's certificate (PEM); unset, the system's trust store.
    database_ssl_root_cert: Path | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    instance_id: str = Field(default_factory=default_instance_id)
    # Lets a second deployment (or a test) share a broker without sharing consumer groups.
    consumer_group_prefix: str = ""
    # Where a new consumer group starts: "earliest" for services (nothing is skipped), "latest" for
    # throwaway groups such as benchmarks that must not replay history.
    kafka_offset_reset: Literal["earliest", "latest"] = "earliest"
    # How soon the group notices a consumer that died without leaving (a SIGKILL, a lost host).
    kafka_session_timeout_ms: int = Field(default=15_000, ge=6_000, le=300_000)
    # Upper bound for a graceful stop: in-flight work finishes, offsets commit, then exit.
    shutdown_grace_seconds: float = 20.0

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ServiceSettings:
        if self.environment != "production":
            return self
        for name, value in self:
            secrets = value.values() if isinstance(value, dict) else [value]
            for secret in secrets:
                if isinstance(secret, SecretStr) and any(m in secret.get_secret_value() for m in PLACEHOLDER_MARKERS):
                    raise ValueError(f"{name} holds a development placeholder; set a real secret in production")
        return self

    @model_validator(mode="after")
    def _refuse_weak_database_access(self) -> ServiceSettings:
        if self.environment != "production":
            return self
        if self.database_sslmode != "verify-full":
            raise ValueError("database_sslmode must be verify-full in production (TLS, server name checked)")
        if self.database_owner_url is None:
            raise ValueError("database_owner_url must be set in production: the runtime login must not own tables")
        if urlsplit(self.owner_dsn or "").username == urlsplit(self.dsn).username:
            raise ValueError("database_owner_url and database_url must be different roles")
        return self

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def owner_dsn(self) -> str | None:
        return self.database_owner_url.get_secret_value() if self.database_owner_url else None

    def database_tls(self) -> ssl.SSLContext | str | bool:
        """What asyncpg's ``ssl=`` takes: an SSLContext that verifies the server, a mode, or False."""
        if self.database_sslmode == "disable":
            return False
        if self.database_sslmode in ("prefer", "require"):
            return self.database_sslmode
        root_cert = str(self.database_ssl_root_cert) if self.database_ssl_root_cert else None
        context = ssl.create_default_context(cafile=root_cert)
        # verify-ca: the chain is checked, the server's name is not.
        context.check_hostname = self.database_sslmode == "verify-full"
        return context
