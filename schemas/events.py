"""One frozen payload model per event type. Past tense for facts, imperative for commands.

Adding an optional field is a compatible change; removing or retyping one, or
tightening an enum, needs a new ``.v2`` type.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from schemas.application import (
    Attachment,
    Cents,
    Contract,
    FiscalYear,
    FundingApplication,
    FundingYear,
    PositiveCents,
)
from schemas.envelope import Event

ApplicationId = Annotated[str, Field(pattern=r"^TH-EGOV-[0-9]{4}-[0-9]{6,}$")]
# One definition for every event that records an application's place in line.
PlaceAt = Annotated[
    AwareDatetime | None,
    Field(
        description="The application's place in line: its complete time (the receipt time of a complete"
        " application, or when the last requested document arrived). The line is ordered by it, then by"
        " received_at, then by application_id. Absent on application.received when the application announces"
        " attachments (its place is then application.completed's completed_at), and on events from before the"
        " fair line: use received_at",
    ),
]


class ProblemItem(Contract):
    code: str = Field(description="Stable, machine-readable error code")
    pointer: str = Field(description="JSON pointer (RFC 6901) to the offending field")
    detail: str


# --- commands on the submissions topic -------------------------------------


class SubmitApplication(Event):
    """A portal's submission published straight to the submissions topic."""

    event_type = "application.submit.v1"
    portal_id: str
    submission_id: str = Field(min_length=1, max_length=200, description="The portal's own id; idempotency key")
    application: dict[str, object] = Field(description="A FundingApplication, validated by intake")


# --- intake -----------------------------------------------------------------


class ApplicationReceived(Event):
    event_type = "application.received.v1"
    application_id: ApplicationId
    portal_id: str
    received_at: AwareDatetime = Field(description="Receipt time; first come, first served builds on it")
    category_open: bool = Field(description="Whether the category could be approved at receipt")
    application: FundingApplication
    submission_id: str | None = Field(
        default=None, description="The portal's submission id, when the application came from the submissions topic"
    )
    place_at: PlaceAt = None


class ApplicationRejected(Event):
    event_type = "application.rejected.v1"
    portal_id: str
    submission_id: str
    errors: list[ProblemItem]


class ApplicationWithdrawn(Event):
    event_type = "application.withdrawn.v1"
    application_id: ApplicationId
    portal_id: str
    reason: str | None = None


class ApplicationCompleted(Event):
    """Every attachment the application announced has arrived and matched its announcement."""

    event_type = "application.completed.v1"
    application_id: ApplicationId
    completed_at: AwareDatetime = Field(
        description="When the last announced attachment arrived: the application's place in line builds on it"
    )
    attachments: Annotated[int, Field(ge=0, description="How many attachments the application announced")]


class DocumentsSupplied(Event):
    """Every document a caseworker requested (``application.documents_requested``) has arrived and
    matched the digest its upload declared: the application is complete again, with a new place."""

    event_type = "application.documents_supplied.v1"
    application_id: ApplicationId
    request_id: str = Field(description="The event id of the application.documents_requested it answers")
    supplied_at: AwareDatetime = Field(
        description="When the last requested document arrived: the application's new place in line builds on it"
    )
    documents: list[Attachment] = Field(min_length=1, description="What arrived, one per requested kind, in order")


class IntakeWatermark(Event):
    """Intake's promise for the partition it is written to: every application event with a place time
    before ``watermark`` is already on it, at a lower offset. Not about one application: readers that
    order applications (budget's line) move their arrival frontier with it, every other reader
    ignores it (services/budget/arrivals.py)."""

    event_type = "intake.watermark.v1"
    watermark: AwareDatetime = Field(
        description="Every application event on this partition whose place time lies before it precedes this record"
    )
    partition: Annotated[int, Field(ge=0, description="The partition the record was written to")]
    instance: str = Field(min_length=1, max_length=200, description="The intake instance that computed it")


# --- review -----------------------------------------------------------------


class ReviewOutcome(StrEnum):
    ELIGIBLE = "eligible"
    INELIGIBLE = "ineligible"
    NEEDS_MANUAL_REVIEW = "needs_manual_review"


class RuleFinding(Contract):
    rule_id: str
    passed: bool
    message_de: str
    message_en: str
    needs_person: bool = Field(default=False, description="Passed, but a caseworker must look (e.g. four-eyes)")


class ApplicationReviewed(Event):
    event_type = "application.reviewed.v1"
    application_id: ApplicationId
    outcome: ReviewOutcome
    rules_version: str
    findings: list[RuleFinding]
    reviewer: str = Field(description="'automatic' or the caseworker's principal id")
    category: str
    amount_cents: Cents
    funding: list[FundingYear]
    received_at: AwareDatetime
    ready_at: AwareDatetime = Field(description="When review finished; processing time, it orders nothing")
    place_at: PlaceAt = None


class DocumentsRequested(Event):
    """A caseworker asked the municipality for missing documents; the case waits."""

    event_type = "application.documents_requested.v1"
    application_id: ApplicationId
    requested_by: str = Field(description="The caseworker's principal id")
    documents: list[str] = Field(min_length=1, description="Attachment kinds still missing")
    message_de: str = Field(description="What the municipality is asked to provide, in German")


class ReviewProposed(Event):
    """A caseworker's decision on a case above the four-eyes threshold. It is only a proposal:
    it takes effect (as ``application.reviewed``) once a second, different caseworker confirms."""

    event_type = "application.review_proposed.v1"
    application_id: ApplicationId
    proposed_by: str = Field(description="The proposing caseworker's principal id")
    outcome: ReviewOutcome = Field(description="eligible or ineligible")
    justification: str = Field(description="The caseworker's written justification")
    early_start_permitted: bool | None = Field(default=None, description="The early-start decision, if requested")
    rules_version: str
    amount_cents: Cents


# --- budget -----------------------------------------------------------------


class FiscalYearOpened(Event):
    event_type = "budget.fiscal_year_opened.v1"
    fiscal_year: FiscalYear
    pot_cents: Cents


class PotAdjusted(Event):
    """A budget administrator raised or lowered a fiscal year's pot."""

    event_type = "budget.pot_adjusted.v1"
    fiscal_year: FiscalYear
    previous_pot_cents: Cents
    pot_cents: Cents


class CategoryPaused(Event):
    event_type = "budget.category_paused.v1"
    category: str


class CategoryResumed(Event):
    event_type = "budget.category_resumed.v1"
    category: str


class FiscalYearClosed(Event):
    """The year's money lapsed; what still waited was carried over or rejected (see the decisions)."""

    event_type = "budget.fiscal_year_closed.v1"
    fiscal_year: FiscalYear
    waiting_policy: str = Field(description="carry_over or reject")


class FundsEarmarked(Event):
    """The application's place in line came while it is still in review: its amount is set aside, so
    no later application can take it. Eligible turns the earmark into a reservation; ineligible,
    withdrawn or expired releases it (``budget.released`` with ``earmarked: true``)."""

    event_type = "budget.earmarked.v1"
    application_id: ApplicationId
    fiscal_year: FiscalYear
    amount_cents: PositiveCents
    place_at: AwareDatetime = Field(description="The place in line this earmark was taken for")


class FundsReserved(Event):
    event_type = "budget.reserved.v1"
    application_id: ApplicationId
    fiscal_year: FiscalYear
    amount_cents: PositiveCents
    ready_at: AwareDatetime = Field(description="The place time (kept for consumers of the first version)")
    place_at: PlaceAt = None
    from_earmark: bool = Field(
        default=False,
        description="The money was earmarked for this application before: it moves from earmarked to reserved,"
        " not from available",
    )
    provisional: bool = Field(
        default=False,
        description="The grant notice follows later, and until then a withdrawal releases the money."
        " False: committed and decided in the same step, so the decision follows at once",
    )


class FundsCommitted(Event):
    event_type = "budget.committed.v1"
    application_id: ApplicationId
    fiscal_year: FiscalYear
    amount_cents: PositiveCents


class WaitlistReason(StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CATEGORY_PAUSED = "category_paused"
    NO_POT = "no_pot"


class ApplicationWaitlisted(Event):
    event_type = "budget.waitlisted.v1"
    application_id: ApplicationId
    position: int = Field(ge=1, description="1 = next in line")
    reason: WaitlistReason
    amount_cents: PositiveCents
    ready_at: AwareDatetime = Field(description="The place time (kept for consumers of the first version)")
    place_at: PlaceAt = None
    in_review: bool = Field(default=False, description="Review has not finished: the place is held meanwhile")


class FundsReleased(Event):
    event_type = "budget.released.v1"
    application_id: ApplicationId
    fiscal_year: FiscalYear
    amount_cents: PositiveCents
    reason: str
    earmarked: bool = Field(
        default=False, description="What was released was an earmark (held during review), not a reservation"
    )


# --- decisions (the public contract) -----------------------------------------


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class ApplicationDecided(Event):
    """The final decision on one application, for downstream systems."""

    event_type = "application.decided.v1"
    application_id: ApplicationId
    decision: Decision
    amount_cents: Cents = Field(description="Granted amount; 0 when rejected")
    funding: list[FundingYear] = Field(description="Granted amount per fiscal year")
    reasons: list[str] = Field(description="Rule ids or reason codes behind a rejection")
    rules_version: str | None = None
    received_at: AwareDatetime
    decided_at: AwareDatetime


# --- notify -----------------------------------------------------------------


class NoticeChannel(StrEnum):
    EMAIL = "email"
    CALLBACK = "callback"


class NotificationDelivered(Event):
    event_type = "notification.delivered.v1"
    notice_id: str = Field(description="Stable id: derived from the causing event and the channel")
    application_id: ApplicationId | None
    notice_type: str
    channel: NoticeChannel
    attempts: int = Field(ge=1)
    delivered_at: AwareDatetime


class NotificationFailed(Event):
    event_type = "notification.failed.v1"
    notice_id: str
    application_id: ApplicationId | None
    notice_type: str
    channel: NoticeChannel
    attempts: int = Field(ge=1)
    last_error: str
    will_retry: bool = Field(
        default=False, description="True: one attempt failed and another is scheduled; False: notify gave up"
    )
    next_attempt_at: AwareDatetime | None = Field(default=None, description="When the next attempt is due, if any")
