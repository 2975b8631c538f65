from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings
from schemas.rules import DEFAULT_RULES


class BudgetSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BUDGET_", extra="ignore", frozen=True)

    http_port: int = 8003
    database_url: SecretStr = SecretStr("postgresql://egov:egov-dev-only@127.0.0.1:55432/egov_budget")
    rules_file: Path = DEFAULT_RULES
    # strict: a later, smaller application never jumps an earlier one that does not fit yet.
    waitlist_policy: Literal["strict", "first_fit"] = "strict"
    # Budget administrators authenticate with this bearer token (development default refused in production).
    admin_token: SecretStr = SecretStr("budget-admin-dev-only")
