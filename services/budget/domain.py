"""Budget's pure core: who is served from the pots, in which order, and who waits where.

Order ("Windhundprinzip"): by the moment an application became ready for
decision (``ready_at``: when it was found eligible), ties broken by the receipt
time and then by the application id, so the order is total and can be replayed
from the log. The line is kept per fiscal year: under the strict policy an
application that does not fit blocks only later applications that need money
from the same year; under first-fit, later ones that fit are served.

An arrival that is still settling (see the budget settings) is not decided yet,
but it holds its place: later applications for its years wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from schemas.application import FundingYear
from schemas.events import ApplicationDecided, ApplicationReviewed, Decision, ReviewOutcome, WaitlistReason

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

Policy = Literal["strict", "first_fit"]


@dataclass(frozen=True)
class QueuedApplication:
    application_id: str
    ready_at: datetime
    received_at: datetime
    category: str
    funding: Mapping[int, int]  # fiscal year -> cents
    # False while the arrival is still settling: it keeps its place (blocks its years) but is not decided yet.
    settled: bool = True

    @property
    def order_key(self) -> tuple[datetime, datetime, str]:
        return (self.ready_at, self.received_at, self.application_id)

    @property
    def amount_cents(self) -> int:
        return sum(self.funding.values())


@dataclass(frozen=True)
class Waiting:
    application: QueuedApplication
    position: int
    reason: WaitlistReason
    # An arrival still settling stands ahead: the position may yet change, so nobody is told it.
    provisional: bool = False


@dataclass(frozen=True)
class ServicePlan:
    served: list[QueuedApplication] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)


def in_line(queue: Iterable[QueuedApplication]) -> list[QueuedApplication]:
    return sorted(queue, key=lambda a: a.order_key)


def _blocker(app: QueuedApplication, available: Mapping[int, int], paused: set[str]) -> WaitlistReason | None:
    if app.category in paused:
        return WaitlistReason.CATEGORY_PAUSED
    if any(year not in available for year in app.funding):
        return WaitlistReason.NO_POT
    if any(amount > available[year] for year, amount in app.funding.items()):
        return WaitlistReason.INSUFFICIENT_FUNDS
    return None


def plan_service(
    queue: Sequence[QueuedApplication],
    available: Mapping[int, int],
    paused_categories: set[str],
    policy: Policy = "strict",
) -> ServicePlan:
    """Serve the line in order from what is available; everything else waits with its position."""
    remaining = dict(available)
    blocked_years: set[int] = set()
    plan = ServicePlan()
    still_waiting: list[tuple[QueuedApplication, WaitlistReason, bool]] = []
    settling_ahead = False
    for app in in_line(queue):
        if not app.settled:
            blocked_years |= app.funding.keys()
            settling_ahead = True
            continue
        reason = _blocker(app, remaining, paused_categories)
        if reason is None and policy == "strict" and blocked_years & app.funding.keys():
            reason = WaitlistReason.INSUFFICIENT_FUNDS
        if reason is None:
            for year, amount in app.funding.items():
                remaining[year] -= amount
            plan.served.append(app)
            continue
        # A paused category waits without holding up the line: it could not be approved anyway.
        if reason is not WaitlistReason.CATEGORY_PAUSED:
            blocked_years |= app.funding.keys()
        still_waiting.append((app, reason, settling_ahead))
    plan.waiting.extend(Waiting(app, i, reason, p) for i, (app, reason, p) in enumerate(still_waiting, start=1))
    return plan


def final_decision(
    application_id: str,
    decision: Decision,
    *,
    funding: Mapping[int, int] | None = None,
    reasons: Sequence[str] = (),
    rules_version: str | None,
    received_at: datetime,
    decided_at: datetime,
) -> ApplicationDecided:
    """Budget's final word on an application: an approval grants ``funding`` (year -> cents), a
    rejection grants nothing and says its ``reasons`` (failed rule ids or reason codes)."""
    granted = funding or {}
    return ApplicationDecided(
        application_id=application_id,
        decision=decision,
        amount_cents=sum(granted.values()),
        funding=[FundingYear(fiscal_year=y, amount_cents=c) for y, c in sorted(granted.items())],
        reasons=list(reasons),
        rules_version=rules_version,
        received_at=received_at,
        decided_at=decided_at,
    )


# --- what an event means for budget, decided from the facts the handler loaded ---------


@dataclass(frozen=True)
class Reject:
    decided: ApplicationDecided


@dataclass(frozen=True)
class JoinLine:
    application: QueuedApplication


def after_review(reviewed: ApplicationReviewed, *, withdrawn: bool, now: datetime) -> Reject | JoinLine | None:
    """None: nothing for budget to do (a caseworker decides first, or the applicant withdrew while
    the application was in review: the withdrawal is its end, not a rejection)."""
    if reviewed.outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW or withdrawn:
        return None
    if reviewed.outcome is ReviewOutcome.INELIGIBLE:
        failed = [f.rule_id for f in reviewed.findings if not f.passed]
        return Reject(
            final_decision(
                reviewed.application_id,
                Decision.REJECTED,
                reasons=failed,
                rules_version=reviewed.rules_version,
                received_at=reviewed.received_at,
                decided_at=now,
            )
        )
    # Joining the line decides nothing yet: the line is served once the arrival has settled.
    return JoinLine(
        QueuedApplication(
            application_id=reviewed.application_id,
            ready_at=reviewed.ready_at,
            received_at=reviewed.received_at,
            category=reviewed.category,
            funding={f.fiscal_year: f.amount_cents for f in reviewed.funding},
        )
    )


class AfterWithdrawal(StrEnum):
    KEEP_OUT = "keep_out"  # still in review: remember it, so it never joins the line
    TOO_LATE = "too_late"  # already decided: a withdrawal cannot change that
    LEAVE_LINE = "leave_line"  # waiting or reserved: release its money and serve the line again


def after_withdrawal(line_status: str | None) -> AfterWithdrawal:
    """``line_status`` is the application's place in the line, None if it has not joined it."""
    if line_status is None:
        return AfterWithdrawal.KEEP_OUT
    if line_status in ("waiting", "reserved"):
        return AfterWithdrawal.LEAVE_LINE
    return AfterWithdrawal.TOO_LATE
