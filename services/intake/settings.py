from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings
from schemas.rules import DEFAULT_RULES


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore", frozen=True)

    http_port: int = 8001
    database_url: SecretStr = SecretStr("postgresql://egov:egov-dev-only@127.0.0.1:55432/egov_intake")
    rules_file: Path = DEFAULT_RULES
    public_base_url: str = "http://127.0.0.1:8001"
    # A submission gets 202 only after the broker acknowledged it; past this it gets 503.
    publish_timeout_ms: int = Field(default=5_000, ge=500)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
