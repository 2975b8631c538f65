"""Budget's pure core: who is served from the pots, in which order, and who waits where.

Order ("Windhundprinzip"): by the applicant's place time (``place_at``: when the application was
complete, its receipt time or when the last requested document arrived), ties broken by the receipt
time and then by the application id, so the order is total and can be replayed from the log. No
processing time of ours (review, a caseworker, a partition, a restart) enters the order.

Every received application stands in line from receipt. While review runs, the line earmarks its
amount when its place comes (or tells it its waitlist position); eligible turns the earmark into a
reservation. The line is kept per fiscal year: under the strict policy an application that does not
fit blocks only later applications that need money from the same year; under first-fit, later ones
that fit are served.

A place is decided only once no application with an earlier place can still arrive (``arrived``,
from the per-partition frontier, see ``arrivals.py``); until then it is not told anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from schemas.application import FundingYear
from schemas.events import (
    ApplicationDecided,
    ApplicationReceived,
    ApplicationReviewed,
    Decision,
    ReviewOutcome,
    WaitlistReason,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

Policy = Literal["strict", "first_fit"]


@dataclass(frozen=True)
class QueuedApplication:
    application_id: str
    place_at: datetime
    received_at: datetime
    category: str
    funding: Mapping[int, int]  # fiscal year -> cents
    # True while review (or a caseworker) has not found it eligible yet: served means earmarked.
    in_review: bool = False
    # False until every application with an earlier place has arrived: it keeps its place but is not decided.
    settled: bool = True

    @property
    def order_key(self) -> tuple[datetime, datetime, str]:
        return (self.place_at, self.received_at, self.application_id)

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


def queued(reviewed_or_received: ApplicationReviewed | ApplicationReceived, *, in_review: bool) -> QueuedApplication:
    """The application as it stands in line; its place is the applicant's (``place_at``), never ours."""
    event = reviewed_or_received
    if isinstance(event, ApplicationReceived):
        project = event.application.project
        category, funding = project.category, project.funding
    else:
        category, funding = event.category, event.funding
    return QueuedApplication(
        application_id=event.application_id,
        place_at=event.place_at or event.received_at,
        received_at=event.received_at,
        category=category,
        funding={f.fiscal_year: f.amount_cents for f in funding},
        in_review=in_review,
    )


class ReviewStep(StrEnum):
    NOTHING = "nothing"  # decided or withdrawn already, or a redelivery
    JOIN = "join"  # its receipt has not reached budget yet: take its place from the review
    REJECT = "reject"  # ineligible: release what it holds, reject with the failed rules
    RESERVE_EARMARK = "reserve_earmark"  # eligible and earmarked: the earmark becomes the reservation
    BECOME_ELIGIBLE = "become_eligible"  # eligible and waiting: served at its place when money allows
    REPLAN = "replan"  # review found another amount: release what it holds, take its place again with it


# Line statuses in which an application still stands in line (holds its place, or waits for its
# documents to get one).
IN_LINE = ("incomplete", "waiting", "earmarked", "reserved")


def review_step(
    outcome: ReviewOutcome, *, status: str | None, review: str | None, same_funding: bool, withdrawn: bool
) -> ReviewStep:
    """``status``/``review``: the application's line row (None if it has none). A manual case keeps
    whatever place and earmark it has while the caseworker works: nothing changes until the decision."""
    if withdrawn or (status is not None and status not in IN_LINE):
        return ReviewStep.NOTHING
    if status is None:
        return ReviewStep.REJECT if outcome is ReviewOutcome.INELIGIBLE else ReviewStep.JOIN
    if outcome is ReviewOutcome.INELIGIBLE:
        return ReviewStep.REJECT
    if outcome is ReviewOutcome.NEEDS_MANUAL_REVIEW or review == "eligible":
        return ReviewStep.NOTHING
    if not same_funding:
        return ReviewStep.REPLAN
    return ReviewStep.RESERVE_EARMARK if status == "earmarked" else ReviewStep.BECOME_ELIGIBLE


def rejection(reviewed: ApplicationReviewed, *, now: datetime) -> ApplicationDecided:
    failed = [f.rule_id for f in reviewed.findings if not f.passed]
    return final_decision(
        reviewed.application_id,
        Decision.REJECTED,
        reasons=failed,
        rules_version=reviewed.rules_version,
        received_at=reviewed.received_at,
        decided_at=now,
    )


class AfterWithdrawal(StrEnum):
    KEEP_OUT = "keep_out"  # not in line yet: remember it, so it never joins the line
    TOO_LATE = "too_late"  # already decided: a withdrawal cannot change that
    LEAVE_LINE = "leave_line"  # waiting, earmarked or reserved: release its money and serve the line again


def after_withdrawal(line_status: str | None) -> AfterWithdrawal:
    """``line_status`` is the application's place in the line, None if it has not joined it."""
    if line_status is None:
        return AfterWithdrawal.KEEP_OUT
    if line_status in IN_LINE:
        return AfterWithdrawal.LEAVE_LINE
    return AfterWithdrawal.TOO_LATE
