"""Intake's pure policies: who may submit for whom, how often, how many open at once, when a withdrawal is allowed.

No I/O here: the clock is passed in, the store supplies the facts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.events import ProblemItem
from services.intake.domain import STATUS_RANK, pointer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from schemas.application import FundingApplication

# From here on an application is decided (approved, rejected) or withdrawn: no longer open.
FINAL_RANK = STATUS_RANK["approved"]


@dataclass(frozen=True)
class PortalAccess:
    """A registered portal as the API sees it after authentication."""

    portal_id: str
    rate_per_second: float
    burst: int
    ags_prefixes: tuple[str, ...] | None = None  # None: any Thuringian applicant


def fiscal_years(application: FundingApplication) -> list[int]:
    return sorted({f.fiscal_year for f in application.project.funding})


def scope_problem(ags_prefixes: tuple[str, ...] | None, application: FundingApplication) -> ProblemItem | None:
    """A municipal portal submits only for its own municipalities; the state's portal (no prefixes) for all."""
    if ags_prefixes is None or application.applicant.ags.startswith(ags_prefixes):
        return None
    return ProblemItem(
        code="auth.applicant_not_permitted",
        pointer="/applicant/ags",
        detail="this portal may not submit applications for this applicant",
    )


def unstorable_text(application: FundingApplication) -> list[ProblemItem]:
    """NUL characters pass JSON and the contract, but no PostgreSQL text column downstream can hold them."""
    return [
        ProblemItem(code="field.invalid_character", pointer=pointer(*path), detail="text must not contain NUL")
        for path, text in _strings(application.model_dump(mode="json"), ())
        if "\x00" in text
    ]


def _strings(value: object, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def quota_problem(full_year: int, cap: int) -> ProblemItem:
    return ProblemItem(
        code="applicant.open_applications_limit",
        pointer="/project/funding",
        detail=f"the applicant already has {cap} open applications for fiscal year {full_year}",
    )


def withdrawal_refusal(status: str) -> tuple[str, str] | None:
    """(code, title) when the application can no longer be withdrawn; None when it can."""
    if status == "withdrawn":
        return "application.already_withdrawn", "The application is already withdrawn"
    if STATUS_RANK[status] >= FINAL_RANK:
        return "application.already_decided", "The application is decided and can no longer be withdrawn"
    return None


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one request takes one token."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    updated: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float) -> float:
        """0.0 if the request may pass, else the seconds until a token is available."""
        if self.updated > -math.inf:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class RateLimits:
    """One bucket per portal, per instance: N instances admit up to N times the rate (documented)."""

    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def wait_seconds(self, portal: PortalAccess, now: float) -> float:
        bucket = self.buckets.get(portal.portal_id)
        if bucket is None or (bucket.rate, bucket.burst) != (portal.rate_per_second, portal.burst):
            bucket = self.buckets[portal.portal_id] = TokenBucket(portal.rate_per_second, portal.burst)
        return bucket.take(now)
