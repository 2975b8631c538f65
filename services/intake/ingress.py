"""What the Kafka ingress does with one submission record, decided in pure code.

The handler (``handlers.on_submission``) loads the facts, ``decide`` picks the outcome, and the
handler writes it: no database is needed to test a decision (tests/unit/test_intake_admission.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas.events import ProblemItem, SubmitApplication
from services.intake.admission import FullYear, NotAdmitted, admit

if TYPE_CHECKING:
    from schemas.application import FundingApplication

ID_REUSED = ProblemItem(
    code="submission.id_reused",
    pointer="/submission_id",
    detail="this submission_id was already used by this portal for another application",
)


@dataclass(frozen=True)
class SubmissionFacts:
    """What the handler loaded for a record proven to come from the registered portal it names."""

    command: SubmitApplication
    scope: tuple[str, ...] | None  # the portal's AGS prefixes; None: any applicant
    digest: bytes
    earlier_digest: bytes | None  # the body this portal first sent under the same submission_id
    # Not loaded (None) for a submission seen before: the decision does not look at them then.
    parsed: FundingApplication | list[ProblemItem] | None = None
    full_year: FullYear | None = None


@dataclass(frozen=True)
class Unproven:
    """No valid signature by the portal the record names: answered without believing its claims."""


@dataclass(frozen=True)
class Duplicate:
    """The same submission published again: its application exists, nothing more to do."""


@dataclass(frozen=True)
class Refuse:
    problems: tuple[ProblemItem, ...]


@dataclass(frozen=True)
class Admit:
    application: FundingApplication


Decision = Unproven | Duplicate | Refuse | Admit


def decide(facts: SubmissionFacts | None) -> Decision:
    """``facts`` is None for a record not proven to come from its portal (nothing in it was read)."""
    if facts is None:
        return Unproven()
    if facts.earlier_digest is not None:
        return Duplicate() if facts.earlier_digest == facts.digest else Refuse((ID_REUSED,))
    assert facts.parsed is not None, "a new submission is always parsed"
    admitted = admit(facts.parsed, facts.scope, facts.full_year)
    return Refuse(admitted.problems) if isinstance(admitted, NotAdmitted) else Admit(admitted)
