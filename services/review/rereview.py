"""Re-reviewing recorded applications under another rules version, pure: what would each outcome have been?

``python -m services.review.whatif`` loads a period and prints this module's answer.

The double-funding rule depends on which other applications were open at the time, so the replay
walks the applications in receipt order and keeps its own set of open measures, seeded with the
applications received before the period that still count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas.events import ApplicationReceived, ReviewOutcome, RuleFinding
from services.review.domain import ReviewCase, review

if TYPE_CHECKING:
    from schemas.rules import Rules


@dataclass(frozen=True)
class Measure:
    """What the double-funding rule compares: who, which category, which fiscal years."""

    application_id: str
    ags: frozenset[str]
    category: str
    fiscal_years: frozenset[int]

    @classmethod
    def of(cls, received: ApplicationReceived) -> Measure:
        app = received.application
        return cls(
            received.application_id,
            frozenset([app.applicant.ags, *(p.ags for p in app.partners)]),
            app.project.category,
            frozenset(f.fiscal_year for f in app.project.funding),
        )

    def clashes(self, other: Measure) -> bool:
        return (
            self.application_id != other.application_id
            and self.category == other.category
            and bool(self.ags & other.ags)
            and bool(self.fiscal_years & other.fiscal_years)
        )


@dataclass(frozen=True)
class Recorded:
    """A review as it was recorded, with the caseworker's decision if there was one."""

    received: ApplicationReceived
    rules_version: str
    outcome: ReviewOutcome
    findings: list[RuleFinding]
    decided_outcome: ReviewOutcome | None = None


@dataclass(frozen=True)
class Replayed:
    recorded: Recorded
    outcome: ReviewOutcome
    findings: list[RuleFinding]

    @property
    def changed(self) -> bool:
        return self.outcome is not self.recorded.outcome

    @property
    def differing_rules(self) -> list[str]:
        """Rule ids whose result (passed, needs a person) differs from the recorded one."""
        before = {f.rule_id: (f.passed, f.needs_person) for f in self.recorded.findings}
        after = {f.rule_id: (f.passed, f.needs_person) for f in self.findings}
        return sorted(r for r in before.keys() | after.keys() if before.get(r) != after.get(r))


def replay(recorded: list[Recorded], rules: Rules, open_before: list[Measure]) -> list[Replayed]:
    open_measures = list(open_before)
    results = []
    for item in sorted(recorded, key=lambda r: (r.received.received_at, r.received.application_id)):
        measure = Measure.of(item.received)
        competing = tuple(sorted(m.application_id for m in open_measures if m.clashes(measure)))
        case = ReviewCase(item.received.application, item.received.received_at, competing)
        outcome, findings = review(case, rules)
        if outcome is not ReviewOutcome.INELIGIBLE:
            open_measures.append(measure)
        results.append(Replayed(item, outcome, findings))
    return results


def changes(results: list[Replayed]) -> Counter[tuple[ReviewOutcome, ReviewOutcome]]:
    """How many outcomes would move from one value to another."""
    return Counter((r.recorded.outcome, r.outcome) for r in results if r.changed)
