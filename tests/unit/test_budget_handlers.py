"""Budget's handler decisions, without PostgreSQL: what a review result or a withdrawal means for a place.

The handlers load the facts (was it withdrawn? where does it stand in line?), ask the pure
functions here what follows, and write that; the writing is covered by the integration suites.
The decision metrics are counted from the events a transaction committed, tested here too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from schemas.application import FundingYear
from schemas.events import ApplicationReviewed, Decision, FundsReserved, ReviewOutcome, RuleFinding
from services.budget.domain import (
    AfterWithdrawal,
    ReviewStep,
    after_withdrawal,
    final_decision,
    queued,
    rejection,
    review_step,
)
from services.budget.line import emit
from services.budget.metrics import counted

pytestmark = pytest.mark.unit

APP_ID = "TH-EGOV-2027-000001"
RECEIVED = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
PLACE = RECEIVED  # complete at submission
READY = RECEIVED + timedelta(hours=2)
NOW = RECEIVED + timedelta(days=1)


def finding(rule_id: str, passed: bool) -> RuleFinding:
    return RuleFinding(rule_id=rule_id, passed=passed, message_de="x", message_en="x")


def review(outcome: ReviewOutcome, *, findings: list[RuleFinding] | None = None) -> ApplicationReviewed:
    funding = {2028: 30_000, 2027: 70_000}
    return ApplicationReviewed(
        application_id=APP_ID,
        outcome=outcome,
        rules_version="egov-2024-v1",
        findings=findings or [finding("R01", True)],
        reviewer="automatic",
        category="dms_eservices",
        amount_cents=sum(funding.values()),
        funding=[FundingYear(fiscal_year=y, amount_cents=c) for y, c in funding.items()],
        received_at=RECEIVED,
        ready_at=READY,
        place_at=PLACE,
    )


def test_a_review_carries_the_applicants_place_never_the_time_review_finished() -> None:
    joined = queued(review(ReviewOutcome.ELIGIBLE), in_review=False)
    assert (joined.application_id, joined.category) == (APP_ID, "dms_eservices")
    assert (joined.place_at, joined.received_at) == (PLACE, RECEIVED)
    assert joined.order_key[0] != READY
    assert dict(joined.funding) == {2027: 70_000, 2028: 30_000}
    assert joined.amount_cents == 100_000


def test_an_event_from_before_the_fair_line_takes_its_place_from_the_receipt_time() -> None:
    old = review(ReviewOutcome.ELIGIBLE).model_copy(update={"place_at": None})
    assert queued(old, in_review=False).place_at == RECEIVED


def test_an_ineligible_application_is_rejected_with_the_rules_it_failed() -> None:
    findings = [finding("R01", True), finding("R05", False), finding("R07", False)]
    decided = rejection(review(ReviewOutcome.INELIGIBLE, findings=findings), now=NOW)
    assert decided.decision is Decision.REJECTED
    assert decided.reasons == ["R05", "R07"]
    assert (decided.amount_cents, decided.funding) == (0, [])
    assert (decided.rules_version, decided.received_at, decided.decided_at) == ("egov-2024-v1", RECEIVED, NOW)


def step(
    outcome: ReviewOutcome, status: str | None, review_state: str | None = "pending", *, same: bool = True
) -> ReviewStep:
    return review_step(outcome, status=status, review=review_state, same_funding=same, withdrawn=False)


def test_a_manual_case_keeps_its_place_and_earmark_while_the_caseworker_works() -> None:
    assert step(ReviewOutcome.NEEDS_MANUAL_REVIEW, "earmarked") is ReviewStep.NOTHING
    assert step(ReviewOutcome.NEEDS_MANUAL_REVIEW, "waiting") is ReviewStep.NOTHING


def test_a_review_before_its_receipt_reached_budget_takes_the_place_itself() -> None:
    assert step(ReviewOutcome.ELIGIBLE, None, None) is ReviewStep.JOIN
    assert step(ReviewOutcome.NEEDS_MANUAL_REVIEW, None, None) is ReviewStep.JOIN
    assert step(ReviewOutcome.INELIGIBLE, None, None) is ReviewStep.REJECT


def test_eligible_turns_an_earmark_into_the_reservation_and_a_waiting_place_into_an_eligible_one() -> None:
    assert step(ReviewOutcome.ELIGIBLE, "earmarked") is ReviewStep.RESERVE_EARMARK
    assert step(ReviewOutcome.ELIGIBLE, "waiting") is ReviewStep.BECOME_ELIGIBLE


def test_another_amount_found_in_review_takes_the_place_again_with_it() -> None:
    assert step(ReviewOutcome.ELIGIBLE, "earmarked", same=False) is ReviewStep.REPLAN


@pytest.mark.parametrize("status", ["waiting", "earmarked", "reserved"])
def test_ineligible_releases_whatever_the_place_holds(status: str) -> None:
    assert step(ReviewOutcome.INELIGIBLE, status) is ReviewStep.REJECT


@pytest.mark.parametrize("status", ["approved", "rejected", "withdrawn"])
def test_a_review_after_the_end_changes_nothing(status: str) -> None:
    assert step(ReviewOutcome.ELIGIBLE, status) is ReviewStep.NOTHING
    assert step(ReviewOutcome.INELIGIBLE, status) is ReviewStep.NOTHING


def test_a_redelivered_eligible_review_changes_nothing() -> None:
    assert step(ReviewOutcome.ELIGIBLE, "reserved", "eligible") is ReviewStep.NOTHING


@pytest.mark.parametrize("outcome", [ReviewOutcome.ELIGIBLE, ReviewOutcome.INELIGIBLE])
def test_a_withdrawal_before_the_line_saw_it_is_the_end_neither_a_place_nor_a_rejection(outcome: ReviewOutcome) -> None:
    assert review_step(outcome, status=None, review=None, same_funding=False, withdrawn=True) is ReviewStep.NOTHING


def test_a_withdrawal_before_joining_the_line_keeps_the_application_out() -> None:
    assert after_withdrawal(None) is AfterWithdrawal.KEEP_OUT


@pytest.mark.parametrize("status", ["waiting", "earmarked", "reserved"])
def test_a_withdrawal_while_waiting_earmarked_or_reserved_leaves_the_line(status: str) -> None:
    assert after_withdrawal(status) is AfterWithdrawal.LEAVE_LINE


@pytest.mark.parametrize("status", ["approved", "rejected", "withdrawn"])
def test_a_withdrawal_after_the_decision_comes_too_late(status: str) -> None:
    assert after_withdrawal(status) is AfterWithdrawal.TOO_LATE


def test_an_approval_grants_each_year_in_order_and_their_sum() -> None:
    approved = final_decision(
        APP_ID,
        Decision.APPROVED,
        funding={2028: 30_000, 2027: 70_000},
        rules_version="egov-2024-v1",
        received_at=RECEIVED,
        decided_at=NOW,
    )
    assert approved.amount_cents == 100_000
    assert [(f.fiscal_year, f.amount_cents) for f in approved.funding] == [(2027, 70_000), (2028, 30_000)]
    assert approved.reasons == []


def test_decisions_are_counted_from_the_events_that_committed() -> None:
    approved = final_decision(
        APP_ID, Decision.APPROVED, funding={2027: 1}, rules_version=None, received_at=RECEIVED, decided_at=NOW
    )
    reserved = FundsReserved(application_id=APP_ID, fiscal_year=2027, amount_cents=1, ready_at=READY)
    committed = [emit(reserved, APP_ID), emit(approved, APP_ID)]
    before = REGISTRY.get_sample_value("egov_decisions_total", {"decision": "approved"}) or 0.0
    latency_before = REGISTRY.get_sample_value("egov_decision_latency_seconds_count") or 0.0
    counted(committed)
    assert REGISTRY.get_sample_value("egov_decisions_total", {"decision": "approved"}) == before + 1
    assert REGISTRY.get_sample_value("egov_decision_latency_seconds_count") == latency_before + 1
