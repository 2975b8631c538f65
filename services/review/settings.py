from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings
from schemas.rules import DEFAULT_RULES


class ReviewSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REVIEW_", extra="ignore", frozen=True)

    http_port: int = 8002
    database_url: SecretStr = SecretStr("postgresql://egov_review:egov_review-dev-only@127.0.0.1:55432/egov_review")
    rules_file: Path = DEFAULT_RULES
    # Where review reads the documents caseworkers open (intake's internal route), and its credential
    # there (intake's INTAKE_REVIEW_TOKEN).
    intake_url: str = "http://127.0.0.1:8001"
    intake_token: SecretStr = SecretStr("review-service-dev-only")
