"""Review's pure core: each rule a small named function with a stable id and German and English text.

``review(case, rules)`` runs every rule and derives the outcome: any failed rule
makes the application ineligible; otherwise any finding that needs a person
sends it to the caseworker queue; otherwise it is eligible. ``application_reviewed``
builds the one event a review result becomes, automatic or a caseworker's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.events import ApplicationReceived, ApplicationReviewed, ReviewOutcome, RuleFinding
from schemas.rules import Rules

if TYPE_CHECKING:
    from datetime import datetime

    from schemas.application import FundingApplication, Municipality

# The reviewer of an automatic review; a caseworker's review names the caseworker.
AUTOMATIC = "automatic"


@dataclass(frozen=True)
class ReviewCase:
    application: FundingApplication
    received_at: datetime
    # Ids of other open applications that fund the same measure for one of the same municipalities.
    competing_applications: tuple[str, ...] = field(default=())

    @property
    def municipalities(self) -> list[Municipality]:
        return [self.application.applicant, *self.application.partners]


RuleCheck = Callable[[ReviewCase, Rules], RuleFinding]


def _finding(rule_id: str, passed: bool, de: str, en: str, *, needs_person: bool = False) -> RuleFinding:
    return RuleFinding(rule_id=rule_id, passed=passed, message_de=de, message_en=en, needs_person=needs_person)


def applicant_in_state(case: ReviewCase, rules: Rules) -> RuleFinding:
    outside = [m.ags for m in case.municipalities if not m.ags.startswith(rules.state_code)]
    return _finding(
        "R01-applicant-in-thueringen",
        not outside,
        "Antragsteller und Partner sind Thüringer Kommunen."
        if not outside
        else "Nicht alle Beteiligten sind Thüringer Kommunen (AGS beginnt nicht mit 16).",
        "Applicant and partners are Thuringian municipalities."
        if not outside
        else "Not every party is a Thuringian municipality (AGS does not start with 16).",
    )


def applicant_kind_allowed(case: ReviewCase, rules: Rules) -> RuleFinding:
    bad = sorted({m.kind.value for m in case.municipalities if m.kind not in rules.allowed_applicant_kinds})
    return _finding(
        "R02-applicant-kind",
        not bad,
        "Die Art der Antragsteller ist zuwendungsberechtigt."
        if not bad
        else f"Nicht antragsberechtigte Art: {', '.join(bad)}.",
        "Applicant kinds are eligible." if not bad else f"Applicant kind not eligible: {', '.join(bad)}.",
    )


def category_known(case: ReviewCase, rules: Rules) -> RuleFinding:
    known = rules.category(case.application.project.category) is not None
    return _finding(
        "R03-category-known",
        known,
        "Der Fördergegenstand ist in der Richtlinie vorgesehen."
        if known
        else "Der Fördergegenstand ist in der Richtlinie nicht vorgesehen.",
        "The category exists in the guideline." if known else "The category does not exist in the guideline.",
    )


def financing_rule(case: ReviewCase, rules: Rules) -> RuleFinding:
    project = case.application.project
    category = rules.category(project.category)
    if category is None:
        return _finding("R04-financing", False, "Keine Finanzierungsart bestimmbar.", "No financing rule applies.")
    if category.financing == "fixed":
        limit = category.fixed_amount_cents or 0
        de_rule, en_rule = "Festbetrag", "fixed amount"
    else:
        # Integer arithmetic: the share of eligible cost, rounded down to whole cents.
        limit = project.eligible_cost_cents * (category.max_rate_percent or 0) // 100
        de_rule, en_rule = (
            f"Anteil von höchstens {category.max_rate_percent} %",
            f"share of at most {category.max_rate_percent} %",
        )
    ok = project.requested_amount_cents <= limit
    return _finding(
        "R04-financing",
        ok,
        f"Die beantragte Summe hält die Finanzierungsart ein ({de_rule})."
        if ok
        else f"Die beantragte Summe übersteigt die Finanzierungsart ({de_rule}: höchstens {limit} Cent).",
        f"The requested amount fits the financing rule ({en_rule})."
        if ok
        else f"The requested amount exceeds the financing rule ({en_rule}: at most {limit} cents).",
    )


def grant_within_limits(case: ReviewCase, rules: Rules) -> RuleFinding:
    amount = case.application.project.requested_amount_cents
    ok = rules.min_grant_cents <= amount <= rules.max_grant_cents
    return _finding(
        "R05-grant-limits",
        ok,
        "Die Zuwendung liegt zwischen Mindest- und Höchstbetrag."
        if ok
        else "Die Zuwendung liegt außerhalb von Mindest- und Höchstbetrag.",
        "The grant lies within the minimum and maximum." if ok else "The grant lies outside the minimum and maximum.",
    )


def project_not_started(case: ReviewCase, rules: Rules) -> RuleFinding:
    project, early = case.application.project, case.application.early_start
    started = project.start_date <= case.received_at.date() or not case.application.declarations.project_not_started
    if early is not None:
        # Early start is its own decision for a person; permission is no funding promise.
        return _finding(
            "R06-not-started",
            True,
            "Vorzeitiger Maßnahmebeginn beantragt: eine Sachbearbeiterin oder ein Sachbearbeiter entscheidet.",
            "Early start requested: a caseworker decides.",
            needs_person=True,
        )
    return _finding(
        "R06-not-started",
        not started,
        "Das Vorhaben hat vor Antragstellung nicht begonnen."
        if not started
        else "Das Vorhaben hat vor Antragstellung begonnen (ohne Antrag auf vorzeitigen Maßnahmebeginn).",
        "The project had not started before the application."
        if not started
        else "The project started before the application (without an early-start request).",
    )


def required_attachments(case: ReviewCase, rules: Rules) -> RuleFinding:
    category = rules.category(case.application.project.category)
    required = set(category.required_attachments) if category else set()
    missing = sorted(required - {a.kind for a in case.application.attachments})
    return _finding(
        "R07-attachments",
        not missing,
        "Alle erforderlichen Unterlagen liegen vor." if not missing else f"Es fehlen Unterlagen: {', '.join(missing)}.",
        "All required documents are attached." if not missing else f"Missing documents: {', '.join(missing)}.",
    )


def no_double_funding(case: ReviewCase, rules: Rules) -> RuleFinding:
    clash = case.competing_applications
    return _finding(
        "R08-no-double-funding",
        not clash,
        "Keine weitere offene Förderung derselben Maßnahme im selben Haushaltsjahr."
        if not clash
        else f"Dieselbe Maßnahme ist bereits beantragt ({', '.join(clash)}).",
        "No other open application funds the same measure in the same fiscal year."
        if not clash
        else f"The same measure is already applied for ({', '.join(clash)}).",
    )


def four_eyes(case: ReviewCase, rules: Rules) -> RuleFinding:
    above = case.application.project.requested_amount_cents > rules.four_eyes_above_cents
    return _finding(
        "R09-four-eyes",
        True,
        "Betrag über der Schwelle: zwei Sachbearbeitende müssen zustimmen."
        if above
        else "Betrag unter der Vier-Augen-Schwelle.",
        "Amount above the threshold: two caseworkers must agree." if above else "Amount below the four-eyes threshold.",
        needs_person=above,
    )


RULES: tuple[RuleCheck, ...] = (
    applicant_in_state,
    applicant_kind_allowed,
    category_known,
    financing_rule,
    grant_within_limits,
    project_not_started,
    required_attachments,
    no_double_funding,
    four_eyes,
)


def review(case: ReviewCase, rules: Rules) -> tuple[ReviewOutcome, list[RuleFinding]]:
    findings = [rule(case, rules) for rule in RULES]
    if any(not f.passed for f in findings):
        return ReviewOutcome.INELIGIBLE, findings
    if any(f.needs_person for f in findings):
        return ReviewOutcome.NEEDS_MANUAL_REVIEW, findings
    return ReviewOutcome.ELIGIBLE, findings


def application_reviewed(
    received: ApplicationReceived,
    outcome: ReviewOutcome,
    rules_version: str,
    findings: list[RuleFinding],
    reviewer: str,
    ready_at: datetime,
) -> ApplicationReviewed:
    """The review result as the event budget and notify read: the project's facts come from the receipt."""
    project = received.application.project
    return ApplicationReviewed(
        application_id=received.application_id,
        outcome=outcome,
        rules_version=rules_version,
        findings=findings,
        reviewer=reviewer,
        category=project.category,
        amount_cents=project.requested_amount_cents,
        funding=project.funding,
        received_at=received.received_at,
        ready_at=ready_at,
        # The place is the applicant's: review passes it on and never moves it.
        place_at=received.place_at or received.received_at,
    )
