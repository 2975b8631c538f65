"""Statistics' core without a broker: what each event does to an application's contribution, counted once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.envelope import Envelope, Event
from schemas.events import (
    ApplicationDecided,
    ApplicationWaitlisted,
    ApplicationWithdrawn,
    Decision,
    FundsCommitted,
    FundsEarmarked,
    FundsReleased,
    FundsReserved,
    WaitlistReason,
)
from services.statistics import totals
from services.statistics.domain import Cell, Dimension, Figure, Status
from services.statistics.export import COLUMNS, as_csv, as_rows
from services.statistics.handlers import Outcome, Step, handle
from tests.statistics_scenario import History, history

APP = "TH-EGOV-2026-000042"
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


class Log:
    """One application's stored state, fed record by record as the agent does (positions count up)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.totals: dict[Cell, Figure] = {}
        self.offset = 0

    def feed(self, envelope: Envelope, position: str | None = None) -> Step:
        if position is None:
            self.offset += 1
            position = f"t:{self.offset}"
        step = handle(envelope.to_bytes(), position, self.state)
        if step.figures is not None:
            self.state = step.figures
        for cell, change in (step.delta or {}).items():
            old = self.totals.get(cell, Figure(0, 0))
            self.totals[cell] = Figure(old.applications + change.applications, old.amount_cents + change.amount_cents)
        return step

    def status(self, dimension: Dimension = Dimension.CATEGORY) -> dict[tuple[str, Status], int]:
        return {
            (c.period, c.status): f.amount_cents
            for c, f in self.totals.items()
            if c.dimension is dimension and f.applications
        }


def wrap(event: Event) -> Envelope:
    return Envelope.wrap(event, source="/egov/budget", subject=APP, time=NOW)


def received(funding: dict[int, int], ending: str = "in_review") -> Envelope:
    import random

    h: History = history(42, random.Random(1))
    h.funding = funding
    envelope = h.records[0][1]
    data = envelope.data | {"application_id": APP}
    data["application"]["project"]["funding"] = [{"fiscal_year": y, "amount_cents": c} for y, c in funding.items()]
    data["application"]["project"]["category"] = "e_akte"
    data["application"]["applicant"]["ags"] = "16051007"
    data["application"]["applicant"]["kind"] = "stadt"
    return Envelope.model_validate({**envelope.model_dump(mode="json"), "subject": APP, "data": data})


def reserved(year: int, cents: int) -> Envelope:
    return wrap(FundsReserved(application_id=APP, fiscal_year=year, amount_cents=cents, ready_at=NOW, provisional=True))


def decided(decision: Decision, funding: dict[int, int]) -> Envelope:
    from schemas.application import FundingYear

    return wrap(
        ApplicationDecided(
            application_id=APP,
            decision=decision,
            amount_cents=sum(funding.values()),
            funding=[FundingYear(fiscal_year=y, amount_cents=c) for y, c in funding.items()],
            reasons=[],
            received_at=NOW,
            decided_at=NOW,
        )
    )


def test_a_received_application_counts_in_review_in_every_dimension_once_per_year() -> None:
    log = Log()
    log.feed(received({2026: 500, 2027: 300}))
    assert log.status() == {("2026", Status.IN_REVIEW): 500, ("2027", Status.IN_REVIEW): 300}
    assert log.status(Dimension.DISTRICT) == log.status(Dimension.APPLICANT_KIND) == log.status()
    assert {c.value for c in log.totals} == {"e_akte", "16051", "stadt"}


def test_a_promotion_from_the_waitlist_moves_the_amount_to_approved() -> None:
    log = Log()
    log.feed(received({2026: 500}))
    waitlisted = ApplicationWaitlisted(
        application_id=APP, position=3, reason=WaitlistReason.INSUFFICIENT_FUNDS, amount_cents=500, ready_at=NOW
    )
    log.feed(wrap(waitlisted))
    assert log.status() == {("2026", Status.WAITLISTED): 500}
    log.feed(reserved(2026, 500))
    assert log.status() == {("2026", Status.RESERVED): 500}
    log.feed(wrap(FundsCommitted(application_id=APP, fiscal_year=2026, amount_cents=500)))
    log.feed(decided(Decision.APPROVED, {2026: 500}))
    assert log.status() == {("2026", Status.APPROVED): 500}
    assert log.status(Dimension.DAY) == {("2026-03-04", Status.APPROVED): 500}


def test_a_withdrawal_that_releases_a_reservation_moves_it_to_withdrawn() -> None:
    log = Log()
    log.feed(received({2026: 500}))
    log.feed(reserved(2026, 500))
    log.feed(wrap(ApplicationWithdrawn(application_id=APP, portal_id="portal-a")))
    log.feed(wrap(FundsReleased(application_id=APP, fiscal_year=2026, amount_cents=500, reason="withdrawn")))
    assert log.status() == {("2026", Status.WITHDRAWN): 500}


def test_money_released_after_the_approval_leaves_approved() -> None:
    log = Log()
    log.feed(received({2026: 500, 2027: 200}))
    log.feed(wrap(FundsCommitted(application_id=APP, fiscal_year=2026, amount_cents=500)))
    log.feed(wrap(FundsCommitted(application_id=APP, fiscal_year=2027, amount_cents=200)))
    log.feed(decided(Decision.APPROVED, {2026: 500, 2027: 200}))
    log.feed(wrap(FundsReleased(application_id=APP, fiscal_year=2027, amount_cents=200, reason="revoked")))
    assert log.status() == {("2026", Status.APPROVED): 500}


def test_a_decision_read_before_the_receipt_counts_once_the_receipt_arrives() -> None:
    log = Log()
    log.feed(decided(Decision.REJECTED, {}))
    assert log.totals == {}
    log.feed(received({2026: 500}))
    assert log.status() == {("2026", Status.REJECTED): 500}


def test_a_redelivered_event_changes_nothing() -> None:
    log = Log()
    log.feed(received({2026: 500}))
    decision = decided(Decision.APPROVED, {2026: 500})
    log.feed(decision)
    before = dict(log.totals)
    assert log.feed(decision).outcome is Outcome.DUPLICATE
    assert log.totals == before


def test_the_same_record_again_hands_out_its_recorded_change_for_totals_that_lack_it() -> None:
    log = Log()
    log.feed(received({2026: 500}))
    first = log.feed(reserved(2026, 500), position="egov.budget.v1:7")
    again = handle(reserved(2026, 500).to_bytes(), "egov.budget.v1:7", log.state)
    assert again.outcome is Outcome.REPLAYED
    assert again.delta == first.delta
    assert again.figures is None


def test_a_total_takes_in_a_record_once_whatever_was_stored_before_a_crash() -> None:
    total = totals.add(None, Figure(1, 500), "egov.budget.v1", 7)
    assert total == {"applications": 1, "amount_cents": 500, "taken": {"egov.budget.v1": 7}}
    assert totals.add(total, Figure(1, 500), "egov.budget.v1", 7) is None
    assert totals.add(total, Figure(1, 500), "egov.budget.v1", 6) is None
    later = totals.add(total, Figure(-1, -500), "egov.decisions.v1", 2)
    assert later is not None
    assert later["applications"] == 0


def test_unknown_types_extra_fields_and_garbage_are_taken_in_stride() -> None:
    log = Log()
    log.feed(received({2026: 500}))
    unknown = Envelope.model_validate({**reserved(2026, 1).model_dump(mode="json"), "type": "de.x.budget.earmarked.v1"})
    assert log.feed(unknown).outcome is Outcome.UNKNOWN_TYPE
    ignored = Envelope.model_validate({**unknown.model_dump(mode="json"), "type": FundsEarmarked.wire_type()})
    assert log.feed(ignored).outcome is Outcome.IGNORED
    extended = reserved(2026, 500)
    extended = Envelope.model_validate({**extended.model_dump(mode="json"), "data": {**extended.data, "place": "x"}})
    assert log.feed(extended).outcome is Outcome.COUNTED
    assert handle(b"not json", "t:99", log.state).outcome is Outcome.INVALID
    free_text = Envelope.model_validate({**received({2026: 1}).model_dump(mode="json"), "id": "other"})
    free_text.data["application"]["project"]["category"] = "Erika Mustermann"
    assert handle(free_text.to_bytes(), "t:100", None).outcome is Outcome.INVALID


def test_stored_figures_hold_no_personal_data() -> None:
    log = Log()
    log.feed(received({2026: 500}))
    stored = repr(log.state)
    for personal in ("Mustermann", "@", "Musterhausen", "+49", "Bürgerportal"):
        assert personal not in stored


def test_the_open_data_rows_have_the_documented_columns() -> None:
    rows = as_rows({Cell(Dimension.DISTRICT, "2026", "16051", Status.APPROVED): Figure(2, 900)})
    assert as_csv(rows) == ",".join(COLUMNS) + "\ndistrict,2026,16051,approved,2,900\n"
