"""The caseworker's part of a review, pure: what each action does to a case, and the findings it adds.

A case needs a person when the automatic review failed no rule but found something a rule cannot
decide: an early-start request (its own decision; permission is no funding promise) or an amount
above the rules version's four-eyes threshold. A caseworker decides eligible or ineligible with a
written justification; above the threshold that decision is a proposal until a second, different
caseworker confirms it. A new decision on a proposed case replaces the proposal (the second
caseworker disagrees); asking the municipality for documents lets the case wait and drops any
proposal. A waiting case can still be decided once the documents have come in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from runtime.refusals import Refusal, Refused
from schemas.events import ReviewOutcome, RuleFinding

FOUR_EYES_RULE = "R09-four-eyes"
EARLY_START_RULE = "R06-not-started"
DECISION_FINDING = "C01-caseworker-decision"
EARLY_START_FINDING = "C02-early-start"
FOUR_EYES_FINDING = "C03-four-eyes-confirmed"
VERDICTS = (ReviewOutcome.ELIGIBLE, ReviewOutcome.INELIGIBLE)


class CaseStatus(StrEnum):
    OPEN = "open"
    WAITING_DOCUMENTS = "waiting_documents"
    PROPOSED = "proposed"
    DECIDED = "decided"


# What "needs a person" means for the queue: a decision or a confirmation is due.
AWAITING_A_PERSON = (CaseStatus.OPEN, CaseStatus.PROPOSED)


class Action(StrEnum):
    """What a caseworker did: the case history's ``action`` and the metric's label."""

    DECIDED = "decided"
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    DOCUMENTS_REQUESTED = "documents_requested"


@dataclass(frozen=True)
class Decision:
    """A caseworker's verdict, with the written justification and (if requested) the early-start decision."""

    outcome: ReviewOutcome
    justification: str
    caseworker: str
    early_start_permitted: bool | None = None


@dataclass(frozen=True)
class Case:
    application_id: str
    status: CaseStatus
    four_eyes: bool
    early_start: bool
    proposal: Decision | None = None


@dataclass(frozen=True)
class Final:
    """A decision that takes effect: decided alone below the threshold, or proposed and confirmed above it."""

    decision: Decision
    confirmed_by: str | None = None

    @property
    def reviewer(self) -> str:
        return self.confirmed_by or self.decision.caseworker


def needs_person_for(findings: list[RuleFinding], rule_id: str) -> bool:
    return any(f.rule_id == rule_id and f.needs_person for f in findings)


def case_not_found(application_id: str) -> Refused:
    return Refused(Refusal.NOT_FOUND, "case.not_found", f"No case {application_id} in the caseworker queue")


def _undecided(case: Case) -> None:
    if case.status is CaseStatus.DECIDED:
        raise Refused(Refusal.CONFLICT, "case.already_decided", f"Case {case.application_id} is already decided")


def decide(case: Case, decision: Decision) -> Decision | Final:
    """A ``Final`` decision below the four-eyes threshold; above it the decision comes back as a proposal."""
    _undecided(case)
    if decision.outcome not in VERDICTS:
        raise Refused(Refusal.INVALID, "case.outcome_invalid", "A caseworker decides eligible or ineligible")
    if case.early_start and decision.early_start_permitted is None:
        raise Refused(Refusal.INVALID, "case.early_start_undecided", "The early-start request needs its own decision")
    if not case.early_start and decision.early_start_permitted is not None:
        raise Refused(Refusal.INVALID, "case.early_start_not_requested", "No early start was requested for this case")
    return decision if case.four_eyes else Final(decision)


def confirm(case: Case, caseworker: str) -> Final:
    _undecided(case)
    if case.status is not CaseStatus.PROPOSED or case.proposal is None:
        raise Refused(Refusal.CONFLICT, "case.no_proposal", f"Case {case.application_id} has no proposal to confirm")
    if case.proposal.caseworker == caseworker:
        raise Refused(
            Refusal.FORBIDDEN,
            "review.four_eyes_same_caseworker",
            "A second, different caseworker must confirm this proposal",
        )
    return Final(case.proposal, confirmed_by=caseworker)


def request_documents(case: Case, documents: list[str], note: str | None) -> str:
    """The German request to the municipality; the case then waits for the documents."""
    _undecided(case)
    text = f"Bitte reichen Sie folgende Unterlagen nach: {', '.join(documents)}. Bis dahin ruht die Prüfung."
    return f"{text} Hinweis der Sachbearbeitung: {note}" if note else text


def _finding(rule_id: str, passed: bool, de: str, en: str) -> RuleFinding:
    return RuleFinding(rule_id=rule_id, passed=passed, message_de=de, message_en=en)


def decision_action(findings: list[RuleFinding]) -> Action:
    """Which action made a caseworker's review take effect: only a confirmation adds the four-eyes finding."""
    return Action.CONFIRMED if any(f.rule_id == FOUR_EYES_FINDING for f in findings) else Action.DECIDED


def caseworker_findings(final: Final) -> list[RuleFinding]:
    """The caseworker's own findings, appended to the automatic ones in the final review."""
    d = final.decision
    eligible = d.outcome is ReviewOutcome.ELIGIBLE
    findings = [
        _finding(
            DECISION_FINDING,
            eligible,
            f"Entscheidung der Sachbearbeitung ({d.caseworker}): {'förderfähig' if eligible else 'nicht förderfähig'}."
            f" Begründung: {d.justification}",
            f"Caseworker decision ({d.caseworker}): {d.outcome.value}. Justification: {d.justification}",
        )
    ]
    if d.early_start_permitted is not None:
        findings.append(
            _finding(
                EARLY_START_FINDING,
                True,
                f"Vorzeitiger Maßnahmebeginn zugelassen ({d.caseworker}); die Zulassung ist keine Förderzusage."
                if d.early_start_permitted
                else f"Vorzeitiger Maßnahmebeginn nicht zugelassen ({d.caseworker}).",
                f"Early start permitted ({d.caseworker}); permission is not a funding promise."
                if d.early_start_permitted
                else f"Early start not permitted ({d.caseworker}).",
            )
        )
    if final.confirmed_by is not None:
        findings.append(
            _finding(
                FOUR_EYES_FINDING,
                True,
                f"Vier-Augen-Prinzip: Vorschlag von {d.caseworker}, bestätigt von {final.confirmed_by}.",
                f"Four eyes: proposed by {d.caseworker}, confirmed by {final.confirmed_by}.",
            )
        )
    return findings
