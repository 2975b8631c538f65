"""Whether intake admits an application: the one rule the HTTP API and the Kafka ingress both ask.

Pure. The caller loads the facts (the parsed application, the portal's scope, the year in which the
applicant's quota is used up) and turns a refusal into its own answer: an HTTP problem, or
``application.rejected``. ``received`` is the one way an admitted application becomes its event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from schemas.events import ApplicationReceived, ProblemItem
from services.intake.policy import quota_problem, scope_problem, unstorable_text

if TYPE_CHECKING:
    from datetime import datetime

    from schemas.application import FundingApplication
    from schemas.rules import Rules


class Check(StrEnum):
    """The checks, in the order they run; the HTTP API answers each with its own status."""

    CONTRACT = "contract"  # the schema and the cross-field rules (validate_application)
    STORABLE_TEXT = "storable_text"
    SCOPE = "scope"
    QUOTA = "quota"


@dataclass(frozen=True)
class FullYear:
    """The applicant already has ``cap`` open applications in fiscal ``year``."""

    year: int
    cap: int


@dataclass(frozen=True)
class NotAdmitted:
    check: Check
    problems: tuple[ProblemItem, ...]


def admit(
    parsed: FundingApplication | list[ProblemItem],
    scope: tuple[str, ...] | None,
    full_year: FullYear | None,
) -> FundingApplication | NotAdmitted:
    """The application, or the problems of the first check it fails.

    ``parsed`` is what ``validate_application`` made of the body; ``scope`` the portal's AGS
    prefixes (None: any applicant); ``full_year`` None when no year of the application is full
    (or not known yet: see ``submission.screen``).
    """
    if isinstance(parsed, list):
        return NotAdmitted(Check.CONTRACT, tuple(parsed))
    unstorable = unstorable_text(parsed)
    if unstorable:
        return NotAdmitted(Check.STORABLE_TEXT, tuple(unstorable))
    out_of_scope = scope_problem(scope, parsed)
    if out_of_scope:
        return NotAdmitted(Check.SCOPE, (out_of_scope,))
    if full_year is not None:
        return NotAdmitted(Check.QUOTA, (quota_problem(full_year.year, full_year.cap),))
    return parsed


def received(
    application: FundingApplication,
    *,
    application_id: str,
    portal_id: str,
    received_at: datetime,
    rules: Rules,
    submission_id: str | None,
    paused_by_admin: bool,
) -> ApplicationReceived:
    """The event of an admitted application; ``submission_id`` only when it came from the submissions topic.

    The category is open only if neither the rules file nor a budget administrator (``paused_by_admin``,
    from ``budget.category_paused`` events seen up to now) has paused it."""
    category = rules.category(application.project.category)
    return ApplicationReceived(
        application_id=application_id,
        portal_id=portal_id,
        received_at=received_at,
        category_open=bool(category and category.open and not paused_by_admin),
        application=application,
        submission_id=submission_id,
        # Complete at receipt only if it announces no attachments; otherwise its place is the time the
        # last one arrives (application.completed), and the receipt carries none.
        place_at=None if application.attachments else received_at,
    )
