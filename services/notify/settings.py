from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore", frozen=True)

    http_port: int = 8004
    database_url: SecretStr = SecretStr("postgresql://egov_notify:egov_notify-dev-only@127.0.0.1:55432/egov_notify")

    # E-mail: a real SMTP client. STARTTLS upgrades a plain connection; implicit TLS (port 465) starts
    # encrypted. smtp_ca_file trusts a private CA (e.g. the state's mail relay) besides the system ones.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_starttls: bool = False
    smtp_implicit_tls: bool = False
    smtp_ca_file: Path | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "foerderung@egov.thueringen.example"
    smtp_concurrency: int = Field(default=4, ge=1, description="Mails in flight at once (the relay is one receiver)")

    # Portal callbacks: bounded time per attempt, bounded concurrency per portal.
    callback_connect_timeout_seconds: float = Field(default=3.0, gt=0)
    callback_timeout_seconds: float = Field(default=10.0, gt=0, description="Whole attempt, connect to response")
    callback_concurrency: int = Field(default=4, ge=1, description="Callbacks in flight at once per portal")
    callback_proxy: str | None = None
    # Development and test only: callbacks to loopback (also plain http), for a receiver on this
    # machine. Every other non-public address stays refused; refused in production.
    allow_loopback_callbacks: bool = False

    # The schedule: attempts, backoff, the age after which a notice is given up, the lease of an attempt.
    max_attempts: int = Field(default=8, ge=1)
    max_age_seconds: float = Field(default=2 * 24 * 3600, gt=0)
    first_retry_seconds: float = Field(default=1.0, gt=0)
    max_retry_seconds: float = Field(default=300.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    # The claim leases up to claim_ahead times a destination's concurrency, so the next attempts are
    # in hand when a slot frees. A leased notice may wait that many attempts: the lease outlasts them.
    claim_ahead: int = Field(default=4, ge=1)
    # Notices in hand per instance: attempts running plus those waiting for their destination's slot.
    # Ample, so that a few slow receivers with their claimed-ahead notices cannot fill it.
    max_in_flight: int = Field(default=256, ge=1)
    poll_seconds: float = Field(default=0.2, gt=0)

    # The consumer group is notify-<consumer_name>. Change it only to run an independent notify next
    # to the real one (a test, a migration rehearsal): instances of one deployment share the group.
    consumer_name: str = Field(default="notices", pattern=r"^[a-z0-9][a-z0-9.-]{0,60}$")

    @model_validator(mode="after")
    def _consistent(self) -> NotifySettings:
        if self.smtp_starttls and self.smtp_implicit_tls:
            raise ValueError("smtp_starttls and smtp_implicit_tls exclude each other")
        if self.lease_seconds <= self.claim_ahead * max(self.smtp_timeout_seconds, self.callback_timeout_seconds):
            # A lease running out before the attempt ends would let another instance send the notice meanwhile.
            raise ValueError("lease_seconds must exceed claim_ahead times the SMTP and callback timeouts")
        if self.environment == "production" and self.allow_loopback_callbacks:
            raise ValueError("allow_loopback_callbacks is for development and test, never production")
        encrypted = self.smtp_starttls or self.smtp_implicit_tls
        if self.environment == "production" and self.smtp_username and not encrypted:
            raise ValueError("SMTP credentials are never sent unencrypted in production: enable STARTTLS or TLS")
        return self
