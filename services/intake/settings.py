"""Intake's settings: ``INTAKE_*`` environment variables, validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings
from schemas.rules import DEFAULT_RULES


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore", frozen=True)

    http_port: int = 8001
    database_url: SecretStr = SecretStr("postgresql://egov_intake:egov_intake-dev-only@127.0.0.1:55432/egov_intake")
    rules_file: Path = DEFAULT_RULES
    public_base_url: str = "http://127.0.0.1:8001"
    # A submission gets 202 only after the broker acknowledged it; past this it gets 503 and was not written.
    publish_timeout_ms: int = Field(default=5_000, ge=500)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Per-portal token bucket (per instance); a portal's own row in `portals` may override both.
    rate_limit_per_second: float = Field(default=20.0, gt=0)
    rate_limit_burst: int = Field(default=40, ge=1)
    # Quota: open applications (received, not yet decided or withdrawn) per applicant and fiscal year.
    max_open_applications_per_year: int = Field(default=5, ge=1)
    # How long a portal's credential is trusted from memory; a revocation takes effect within this time.
    portal_cache_seconds: float = Field(default=5.0, ge=0)
    # The status view's consumer name (consumer group ``intake-<name>``); a new name rebuilds it from the topics.
    status_view: str = Field(default="status", pattern=r"^[a-z0-9-]{1,40}$")
    database_pool_size: int = Field(default=10, ge=2, le=100)
    # How far a Kafka submission's signature timestamp may lie from the record's timestamp, either way.
    submission_signature_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    # The review service's credential for reading stored documents (GET /internal/v1/...), which it
    # streams through to caseworkers; portals never read documents over this route.
    review_token: SecretStr = SecretStr("review-service-dev-only")
    # The watermark's claim bound (services/intake/watermarks.py): a submission whose receipt time is older
    # than this when its claim runs keeps the claim's time less the bound instead, so no watermark can
    # pass a receipt not yet claimed. Every place is decided at least this long after it.
    watermark_claim_bound_ms: int = Field(default=500, ge=50, le=10_000)
    # How often watermarks go out while applications flow, and when intake is idle (see Schedule).
    watermark_interval_ms: int = Field(default=150, ge=10, le=5_000)
    watermark_heartbeat_seconds: float = Field(default=10.0, gt=0)
