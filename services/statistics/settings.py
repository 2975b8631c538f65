from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class StatisticsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STATISTICS_", extra="ignore", frozen=True)

    http_port: int = 8005
    # How often faust commits the offsets of what its tables have taken in (after flushing their changelogs).
    commit_interval_seconds: float = Field(default=2.8, gt=0)

    @model_validator(mode="after")
    def _refuse_weak_database_access(self) -> StatisticsSettings:
        """Replaces the base check of the same name: statistics has no database; its state is its changelogs."""
        return self

    @property
    def app_id(self) -> str:
        """faust's consumer group and the prefix of its changelog topics, both inside the principal's ACLs."""
        return f"statistics-{self.consumer_group_prefix}v1"
