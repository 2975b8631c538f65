"""The portal API's request and response shapes: they document the OpenAPI contract."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import ApplicationId, ProblemItem


class ApplicationState(StrEnum):
    """Where an application stands; it only ever moves forward. Within moments of its receipt an
    application's place in line is decided: ``earmarked`` (its amount is set aside while review runs)
    or ``waitlisted`` (the status's timeline tells the position); neither is a promise of funding."""

    RECEIVED = "received"
    EARMARKED = "earmarked"
    NEEDS_MANUAL_REVIEW = "needs_manual_review"
    ELIGIBLE = "eligible"
    INELIGIBLE = "ineligible"
    WAITLISTED = "waitlisted"
    FUNDS_RESERVED = "funds_reserved"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class ApiModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Receipt(ApiModel):
    application_id: ApplicationId
    status: ApplicationState = Field(description="Always 'received' in a receipt")
    received_at: AwareDatetime = Field(description="Receipt time; first come, first served builds on it")
    status_url: str
    category_open: bool = Field(
        description="Whether the category was open at receipt: false when the rules file or a budget "
        "administrator had paused it (every budget.category_paused / budget.category_resumed published up to "
        "the receipt counts). It is no funding promise; the application is reviewed either way."
    )
    category_notice: str | None = Field(description="Set when the category is paused: the application waits")


class ApplicationSummary(ApiModel):
    application_id: ApplicationId
    status: ApplicationState
    category: str
    requested_amount_cents: int = Field(description="Euro cents (integer)")
    fiscal_years: list[int]
    received_at: AwareDatetime
    updated_at: AwareDatetime


class TimelineEntry(ApiModel):
    type: str = Field(description="Event type, e.g. application.reviewed.v1")
    status: str = Field(description="The status this event set, or 'unchanged'")
    time: AwareDatetime
    detail: dict[str, Any] = Field(description="Public fields of the event (amounts, positions, rule versions)")


class ApplicationStatus(ApplicationSummary):
    timeline: list[TimelineEntry]


class ApplicationPage(ApiModel):
    items: list[ApplicationSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class WithdrawalRequest(ApiModel):
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]*$")] | None = None


class Withdrawal(ApiModel):
    application_id: ApplicationId
    status: ApplicationState = Field(description="Always 'withdrawn'")
    withdrawn_at: AwareDatetime


class ProblemDetails(ApiModel):
    """RFC 9457 problem details, with a machine-readable code and, for invalid input, every error."""

    type: str
    title: str
    status: int
    code: str = Field(description="Stable, machine-readable code, e.g. application.invalid")
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemItem] | None = None
    application_id: str | None = Field(
        default=None,
        description="With broker.outcome_unknown: the application the request may have created (or withdrawn)",
    )
