"""Budget's handler decisions, without PostgreSQL: what a review result or a withdrawal means for the line.

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
    JoinLine,
    Reject,
    after_review,
    after_withdrawal,
    final_decision,
)
from services.budget.line import emit
from services.budget.metrics import counted

pytestmark = pytest.mark.unit

APP_ID = "TH-EGOV-2027-000001"
RECEIVED = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
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
    )


def test_an_eligible_application_joins_the_line_with_its_funding_per_year() -> None:
    step = after_review(review(ReviewOutcome.ELIGIBLE), withdrawn=False, now=NOW)
    assert isinstance(step, JoinLine)
    joined = step.application
    assert (joined.application_id, joined.category) == (APP_ID, "dms_eservices")
    assert (joined.ready_at, joined.received_at) == (READY, RECEIVED)
    assert dict(joined.funding) == {2027: 70_000, 2028: 30_000}
    assert joined.amount_cents == 100_000


def test_an_ineligible_application_is_rejected_with_the_rules_it_failed() -> None:
    findings = [finding("R01", True), finding("R05", False), finding("R07", False)]
    step = after_review(review(ReviewOutcome.INELIGIBLE, findings=findings), withdrawn=False, now=NOW)
    assert isinstance(step, Reject)
    decided = step.decided
    assert decided.decision is Decision.REJECTED
    assert decided.reasons == ["R05", "R07"]
    assert (decided.amount_cents, decided.funding) == (0, [])
    assert (decided.rules_version, decided.received_at, decided.decided_at) == ("egov-2024-v1", RECEIVED, NOW)


def test_a_caseworker_decides_first_when_review_asks_for_a_person() -> None:
    assert after_review(review(ReviewOutcome.NEEDS_MANUAL_REVIEW), withdrawn=False, now=NOW) is None


@pytest.mark.parametrize("outcome", [ReviewOutcome.ELIGIBLE, ReviewOutcome.INELIGIBLE])
def test_a_withdrawal_during_review_is_the_end_neither_a_place_nor_a_rejection(outcome: ReviewOutcome) -> None:
    findings = [finding("R05", outcome is ReviewOutcome.ELIGIBLE)]
    assert after_review(review(outcome, findings=findings), withdrawn=True, now=NOW) is None


def test_a_withdrawal_before_joining_the_line_keeps_the_application_out() -> None:
    assert after_withdrawal(None) is AfterWithdrawal.KEEP_OUT


@pytest.mark.parametrize("status", ["waiting", "reserved"])
def test_a_withdrawal_while_waiting_or_reserved_leaves_the_line(status: str) -> None:
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
