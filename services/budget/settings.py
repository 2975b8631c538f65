from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings
from runtime.signing import DEV_KEY_PATH
from schemas.rules import DEFAULT_RULES


class BudgetSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BUDGET_", extra="ignore", frozen=True)

    http_port: int = 8003
    database_url: SecretStr = SecretStr("postgresql://egov_budget:egov_budget-dev-only@127.0.0.1:55432/egov_budget")
    rules_file: Path = DEFAULT_RULES
    # strict: a later, smaller application never jumps an earlier one that does not fit yet.
    waitlist_policy: Literal["strict", "first_fit"] = "strict"
    # What happens to applications still waiting when their fiscal year closes.
    year_close_policy: Literal["carry_over", "reject"] = "carry_over"
    # Reserved money is committed (the grant notice issued) after this long; until then a
    # withdrawal releases it.
    commit_after_seconds: float = Field(default=0.0, ge=0)
    line_interval_seconds: float = Field(default=0.1, gt=0)
    # Budget administrators: name -> bearer token (JSON in BUDGET_ADMIN_TOKENS). The name is the
    # principal every admin event is attributed to.
    admin_tokens: dict[str, SecretStr] = {"budget-admin": SecretStr("budget-admin-dev-only")}
    admin_token: SecretStr | None = None
    # Ed25519 key that signs application.decided; its public half is published beside it (.pub).
    # Outside production a missing key is generated (development only).
    signing_key_file: Path = DEV_KEY_PATH  # a single token for the "budget-admin" principal
