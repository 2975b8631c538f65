"""Hand-made application histories for the statistics app, and the totals they must add up to.

The expected totals are worked out here from each history's known ending (approved with its grant, rejected,
waiting, withdrawn, ...), not by folding events the way the app does: a second, independent account of the
same log.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.application import FundingApplication, FundingYear
from schemas.envelope import Envelope, Event
from schemas.events import (
    ApplicationDecided,
    ApplicationReceived,
    ApplicationWaitlisted,
    ApplicationWithdrawn,
    Decision,
    FundsCommitted,
    FundsReleased,
    FundsReserved,
    WaitlistReason,
)
from schemas.topics import APPLICATIONS, BUDGET, DECISIONS, Topic, topic_of
from tests.support import REPO

CATEGORIES = ("dms_eservices", "training", "e_akte", "it_security")
KINDS = ("gemeinde", "stadt", "landkreis", "verwaltungsgemeinschaft", "zweckverband")
DISTRICTS = ("16051", "16052", "16053", "16061", "16062", "16063")
ENDINGS = ("approved", "promoted", "rejected", "waitlisted", "withdrawn", "in_review", "reserved")
RECEIVED_AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SAMPLE: dict[str, Any] = json.loads((REPO / "deploy" / "demo" / "application.json").read_text())


@dataclass
class History:
    application_id: str
    category: str
    district: str
    kind: str
    funding: dict[int, int]
    ending: str
    decided_at: datetime
    records: list[tuple[Topic, Envelope]] = field(default_factory=list)

    def emit(self, event: Event, source: str) -> Envelope:
        envelope = Envelope.wrap(event, source=source, subject=self.application_id, time=self.decided_at)
        self.records.append((topic_of(type(event)), envelope))
        return envelope

    @property
    def status_and_amounts(self) -> tuple[str, dict[int, int]]:
        status = {"promoted": "approved", "in_review": "in_review"}.get(self.ending, self.ending)
        return status, dict(self.funding)


def history(number: int, rng: random.Random) -> History:
    years = [2026] if rng.random() < 0.7 else [2026, 2027]
    h = History(
        application_id=f"TH-EGOV-2026-{number:06d}",
        category=rng.choice(CATEGORIES),
        district=rng.choice(DISTRICTS),
        kind=rng.choice(KINDS),
        funding={year: rng.randrange(1, 500) * 100_000 for year in years},
        ending=rng.choice(ENDINGS),
        decided_at=RECEIVED_AT + timedelta(days=rng.randrange(0, 5), minutes=number % 600),
    )
    application = copy.deepcopy(SAMPLE)
    application["applicant"].update(kind=h.kind, ags=f"{h.district}{number % 1000:03d}")
    funding = [{"fiscal_year": y, "amount_cents": c} for y, c in h.funding.items()]
    application["project"].update(category=h.category, funding=funding)
    received = ApplicationReceived(
        application_id=h.application_id,
        portal_id="portal-a",
        received_at=RECEIVED_AT,
        category_open=True,
        application=FundingApplication.model_validate(application),
    )
    h.emit(received, "/egov/intake")
    lifecycle(h)
    return h


def lifecycle(h: History) -> None:
    app_id, total = h.application_id, sum(h.funding.values())
    if h.ending in ("waitlisted", "promoted"):
        waiting = WaitlistReason.INSUFFICIENT_FUNDS
        h.emit(ApplicationWaitlisted(application_id=app_id, position=1, reason=waiting, amount_cents=total,
                                     ready_at=RECEIVED_AT), "/egov/budget")  # fmt: skip
    if h.ending in ("approved", "promoted", "withdrawn", "reserved"):
        for year, cents in h.funding.items():
            h.emit(FundsReserved(application_id=app_id, fiscal_year=year, amount_cents=cents, ready_at=RECEIVED_AT,
                                 provisional=h.ending != "approved"), "/egov/budget")  # fmt: skip
    if h.ending == "withdrawn":
        h.emit(ApplicationWithdrawn(application_id=app_id, portal_id="portal-a"), "/egov/intake")
        for year, cents in h.funding.items():
            released = FundsReleased(application_id=app_id, fiscal_year=year, amount_cents=cents, reason="withdrawn")
            h.emit(released, "/egov/budget")
    if h.ending in ("approved", "promoted"):
        for year, cents in h.funding.items():
            h.emit(FundsCommitted(application_id=app_id, fiscal_year=year, amount_cents=cents), "/egov/budget")
        h.emit(decided(h, Decision.APPROVED), "/egov/budget")
    if h.ending == "rejected":
        h.emit(decided(h, Decision.REJECTED), "/egov/budget")


def decided(h: History, decision: Decision) -> ApplicationDecided:
    approved = decision is Decision.APPROVED
    return ApplicationDecided(
        application_id=h.application_id,
        decision=decision,
        amount_cents=sum(h.funding.values()) if approved else 0,
        funding=[FundingYear(fiscal_year=y, amount_cents=c) for y, c in h.funding.items()] if approved else [],
        reasons=[] if approved else ["R05-grant-limits"],
        rules_version="egov-2024-v1",
        received_at=RECEIVED_AT,
        decided_at=h.decided_at,
    )


def histories(count: int, seed: int = 18) -> list[History]:
    rng = random.Random(seed)
    return [history(number, rng) for number in range(1, count + 1)]


Row = tuple[str, str, str, str]  # dimension, period, value, status


def expected_totals(all_histories: list[History]) -> dict[Row, tuple[int, int]]:
    """What the open-data rows must say, from each history's ending alone."""
    applications: Counter[Row] = Counter()
    cents: Counter[Row] = Counter()
    for h in all_histories:
        status, amounts = h.status_and_amounts
        for year, amount in amounts.items():
            for dimension, value in (("category", h.category), ("district", h.district), ("applicant_kind", h.kind)):
                applications[(dimension, str(year), value, status)] += 1
                cents[(dimension, str(year), value, status)] += amount
        if status in ("approved", "rejected"):
            day = ("day", h.decided_at.date().isoformat(), "all", status)
            applications[day] += 1
            cents[day] += sum(amounts.values())
    return {row: (applications[row], cents[row]) for row in applications}


def rows_of(document: dict[str, Any]) -> dict[Row, tuple[int, int]]:
    return {
        (r["dimension"], r["period"], r["value"], r["status"]): (r["applications"], r["amount_cents"])
        for r in document["rows"]
    }


SOURCES = (APPLICATIONS, BUDGET, DECISIONS)
