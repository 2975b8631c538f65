"""Statistics' pure core: what an event does to one application's figures, and what the figures add to the totals.

An application's *figures* are folded from its events (received, waitlisted, reserved, committed, released,
withdrawn, decided), in any order across topics. Its *contribution* is derived from the figures alone: for
each fiscal year it touches, exactly one status and an amount, in each dimension (category, district,
applicant kind), and for a decided application one cell on the day of its decision. The totals are the sum
of the contributions, so an event that supersedes another (a promotion from the waitlist, a withdrawal that
releases a reservation) moves the amount between statuses, and an event seen twice changes nothing: its id
is already in the figures. No I/O here; the faust app is a thin shell around ``handlers.py``.

Only the fields below are read from an event, leniently: fields added later are ignored, and nothing
personal (names, contact, free text) is ever read, so nothing personal can reach a total.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Mapping

# A category id, applicant kind or district is a code, never free text (they end up in open data).
Code = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]
Ags = Annotated[str, Field(pattern=r"^16[0-9]{6}$")]
Cents = Annotated[int, Field(ge=0, le=10**13)]


class Status(StrEnum):
    IN_REVIEW = "in_review"  # received, not yet waitlisted, reserved or decided
    WAITLISTED = "waitlisted"
    RESERVED = "reserved"  # money held, the grant notice not issued yet
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Dimension(StrEnum):
    CATEGORY = "category"
    DISTRICT = "district"
    APPLICANT_KIND = "applicant_kind"
    DAY = "day"  # decisions per UTC day of the decision


class Cell(NamedTuple):
    """One line of the totals: ``period`` is the fiscal year, or the ISO day for ``Dimension.DAY``."""

    dimension: Dimension
    period: str
    value: str
    status: Status


class Figure(NamedTuple):
    applications: int
    amount_cents: int


Contribution = dict[Cell, Figure]


def district_of(ags: str) -> str:
    """The Landkreis (or kreisfreie Stadt): the first five digits of the 8-digit AGS (state, region, district)."""
    return ags[:5]


class Figures(BaseModel):
    """What statistics knows about one application: codes and amounts only, and the ids of events folded in."""

    model_config = ConfigDict(frozen=True)

    category: Code | None = None
    district: str | None = None
    applicant_kind: Code | None = None
    requested: dict[int, Cents] = {}  # fiscal year -> cents, as applied for
    waitlisted: bool = False
    held: dict[int, Cents] = {}  # reserved, neither committed nor released yet
    committed: dict[int, Cents] = {}
    revoked: dict[int, Cents] = {}  # released after it was committed
    withdrawn: bool = False
    decision: Status | None = None  # APPROVED or REJECTED
    granted: dict[int, Cents] = {}
    decided_on: date | None = None
    seen: tuple[str, ...] = ()  # event ids already folded in

    @property
    def known(self) -> bool:
        """An application counts once its receipt (category, district, kind, amounts) has been seen."""
        return self.category is not None and self.district is not None and self.applicant_kind is not None


def status_and_amounts(f: Figures) -> tuple[Status, dict[int, int]]:
    """The application's one status now, with its amount per fiscal year. The final decision wins; money
    the budget still holds or has committed says more than a waitlist place; the requested amount else."""
    if f.decision is Status.REJECTED:
        return Status.REJECTED, dict(f.requested)
    granted = f.granted if f.decision is Status.APPROVED else f.committed
    kept = {y: c - f.revoked.get(y, 0) for y, c in granted.items() if c - f.revoked.get(y, 0) > 0}
    if kept:
        return Status.APPROVED, kept
    if f.withdrawn or f.decision is Status.APPROVED:  # approved, then every cent released again
        return Status.WITHDRAWN, dict(f.requested)
    held = {y: c for y, c in f.held.items() if c > 0}
    if held:
        return Status.RESERVED, held
    return (Status.WAITLISTED if f.waitlisted else Status.IN_REVIEW), dict(f.requested)


def contribution(f: Figures) -> Contribution:
    """What this application adds to the totals: one cell per year and dimension, one per decision day."""
    if not f.known:
        return {}
    status, amounts = status_and_amounts(f)
    cells: Contribution = {}
    values = {
        Dimension.CATEGORY: f.category,
        Dimension.DISTRICT: f.district,
        Dimension.APPLICANT_KIND: f.applicant_kind,
    }
    for year, cents in amounts.items():
        for dimension, value in values.items():
            cells[Cell(dimension, str(year), str(value), status)] = Figure(1, cents)
    if f.decided_on is not None and status in (Status.APPROVED, Status.REJECTED, Status.WITHDRAWN):
        cells[Cell(Dimension.DAY, f.decided_on.isoformat(), "all", status)] = Figure(1, sum(amounts.values()))
    return cells


def difference(before: Contribution, after: Contribution) -> Contribution:
    """after - before, cell by cell, leaving out cells that did not change."""
    delta: Contribution = {}
    for cell in before.keys() | after.keys():
        old, new = before.get(cell, Figure(0, 0)), after.get(cell, Figure(0, 0))
        if old != new:
            delta[cell] = Figure(new.applications - old.applications, new.amount_cents - old.amount_cents)
    return delta


# --- the fields read from each event type -------------------------------------------------------


class Lenient(BaseModel):
    """Reads only the fields it names: fields a producer adds later are ignored, not refused."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class YearAmount(Lenient):
    fiscal_year: int = Field(ge=2019, le=2100)
    amount_cents: Cents


class Applicant(Lenient):
    kind: Code
    ags: Ags


class Project(Lenient):
    category: Code
    funding: list[YearAmount]


class ReceivedApplication(Lenient):
    applicant: Applicant
    project: Project


class Received(Lenient):
    application: ReceivedApplication


class MoneyMoved(Lenient):
    """reserved, committed and released all say: this much of this year."""

    fiscal_year: int = Field(ge=2019, le=2100)
    amount_cents: Cents


class Decided(Lenient):
    decision: Status
    funding: list[YearAmount]
    decided_at: AwareDatetime


def years(amounts: list[YearAmount]) -> dict[int, int]:
    out: dict[int, int] = {}
    for y in amounts:
        out[y.fiscal_year] = out.get(y.fiscal_year, 0) + y.amount_cents
    return out


def plus(amounts: Mapping[int, int], year: int, cents: int) -> dict[int, int]:
    return {**amounts, year: max(0, amounts.get(year, 0) + cents)}
