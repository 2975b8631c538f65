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

from runtime.kafka import KafkaAccess, Replication, SaslMechanism, SecurityProtocol

# A secret containing one of these is a development placeholder, refused in production.
PLACEHOLDER_MARKERS = ("dev-only", "changeme", "placeholder", "example")


# libpq's sslmode names. Production needs "verify-full": "verify-ca" would accept any server holding a
# certificate from the CA, and managed PostgreSQL CAs sign many customers' servers.
SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class KafkaClientSettings(BaseSettings):
    """How a process reaches the broker, as whom. Services inherit these under their own prefix
    (``INTAKE_KAFKA_USERNAME``); tools read them as ``EGOV_KAFKA_*`` (``ToolSettings``)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: SecurityProtocol = "SASL_SSL"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    # The CA that signed the broker's certificate; unset: the system's trust store.
    kafka_ca_file: Path | None = None
    kafka_tls_verify: bool = True
    # Unset: 1 and 1 outside production (one local broker), 3 and 2 in production.
    kafka_replication_factor: int | None = Field(default=None, ge=1)
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> KafkaClientSettings:
        if self.environment != "production":
            return self
        for name, value in self:
            secrets = value.values() if isinstance(value, dict) else [value]
            for secret in secrets:
                if isinstance(secret, SecretStr) and any(m in secret.get_secret_value() for m in PLACEHOLDER_MARKERS):
                    raise ValueError(f"{name} holds a development placeholder; set a real secret in production")
        return self

    @model_validator(mode="after")
    def _refuse_open_kafka_in_production(self) -> KafkaClientSettings:
        if self.environment != "production":
            return self
        if self.kafka_security_protocol not in ("SASL_SSL", "SSL"):
            raise ValueError(f"kafka_security_protocol {self.kafka_security_protocol} is not encrypted: use SASL_SSL")
        if not self.kafka_tls_verify:
            raise ValueError("kafka_tls_verify is off: production verifies the broker's certificate")
        if self.kafka_security_protocol == "SASL_SSL" and not (
            self.kafka_username and self.kafka_password.get_secret_value()
        ):
            raise ValueError("kafka_username and kafka_password are required with SASL_SSL")
        return self

    @property
    def kafka(self) -> KafkaAccess:
        if self.kafka_security_protocol.startswith("SASL_") and not self.kafka_username:
            prefix = str(self.model_config.get("env_prefix", "")).upper()
            raise ValueError(f"{prefix}KAFKA_USERNAME is not set: every Kafka client authenticates")
        return KafkaAccess(
            bootstrap=self.kafka_bootstrap,
            username=self.kafka_username,
            password=self.kafka_password,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            ca_file=self.kafka_ca_file,
            tls_verify=self.kafka_tls_verify,
        )

    @property
    def replication(self) -> Replication:
        production = self.environment == "production"
        factor = self.kafka_replication_factor or (3 if production else 1)
        return Replication(factor, self.kafka_min_insync_replicas or min(factor, 2 if production else 1))


class ToolSettings(KafkaClientSettings):
    """Command-line tools (topics, ACLs, audit): ``EGOV_KAFKA_BOOTSTRAP``, ``EGOV_KAFKA_USERNAME``, ..."""

    model_config = SettingsConfigDict(env_prefix="EGOV_", extra="ignore", frozen=True)


class ServiceSettings(KafkaClientSettings):
    """Subclass per service and set ``model_config`` with the service's ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

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
    # The HTTP edge (README "HTTP edges"). A client address answered 401 this many times within the
    # window gets 429 until the window lets it try again.
    http_auth_failure_limit: int = Field(default=10, ge=1)
    http_auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    # A request's headers must arrive within this time of its first byte, its body within the second
    # after the headers; else the connection is closed (slowloris).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Connections plus running requests past which uvicorn answers 503 (see runtime.http).
    http_limit_concurrency: int = Field(default=1000, ge=1)
    # Proxies whose X-Forwarded-For names the client (throttling is per client address). Empty:
    # none, the peer address counts (uvicorn would otherwise trust any local process).
    http_trusted_proxies: list[str] = []
    # Upper bound for a graceful stop: in-flight work finishes, offsets commit, then exit.
    shutdown_grace_seconds: float = 20.0

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
