"""A fiscal year's pot replayed from the log: opened, raised, lowered, every reservation, commit
and release with the totals after it, and the line (who waited, at which position, and when they
left it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from audit.log import application_of, euros, in_order, short_type, typed
from schemas.events import (
    ApplicationCompleted,
    ApplicationDecided,
    ApplicationReceived,
    ApplicationReviewed,
    ApplicationWaitlisted,
    ApplicationWithdrawn,
    DocumentsSupplied,
    FiscalYearClosed,
    FiscalYearOpened,
    FundsCommitted,
    FundsEarmarked,
    FundsReleased,
    FundsReserved,
    PotAdjusted,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from schemas.envelope import Envelope, Event


@dataclass
class Pot:
    pot: int = 0
    earmarked: int = 0
    reserved: int = 0
    committed: int = 0
    set_by: str | None = None  # the event that last set the pot's size
    closed: bool = False

    @property
    def held(self) -> int:
        return self.earmarked + self.reserved + self.committed

    @property
    def available(self) -> int:
        return self.pot - self.held

    @property
    def consistent(self) -> bool:
        parts = (self.earmarked, self.reserved, self.committed)
        return all(part >= 0 for part in parts) and self.held <= self.pot


def apply(pots: dict[int, Pot], envelope: Envelope, event: Event | None) -> int | None:
    """Move the money an event moves; returns the fiscal year it touched, if any."""
    match event:
        case FiscalYearOpened() | PotAdjusted():
            pot = pots.setdefault(event.fiscal_year, Pot())
            pot.pot, pot.set_by = event.pot_cents, envelope.id
        case FundsEarmarked():
            pots.setdefault(event.fiscal_year, Pot()).earmarked += event.amount_cents
        case FundsReserved():
            pot = pots.setdefault(event.fiscal_year, Pot())
            pot.reserved += event.amount_cents
            if event.from_earmark:
                pot.earmarked -= event.amount_cents
        case FundsCommitted():
            pot = pots.setdefault(event.fiscal_year, Pot())
            pot.reserved -= event.amount_cents
            pot.committed += event.amount_cents
        case FundsReleased(earmarked=True):
            pots.setdefault(event.fiscal_year, Pot()).earmarked -= event.amount_cents
        case FundsReleased():
            pots.setdefault(event.fiscal_year, Pot()).reserved -= event.amount_cents
        case FiscalYearClosed():
            pots.setdefault(event.fiscal_year, Pot()).closed = True
        case _:
            return None
    return event.fiscal_year


def replay(history: list[Envelope]) -> Iterator[tuple[Envelope, int, Pot]]:
    """Each money-moving event with its fiscal year and that year's pot right after it."""
    pots: dict[int, Pot] = {}
    for envelope in history:
        year = apply(pots, envelope, typed(envelope))
        if year is not None:
            yield envelope, year, pots[year]


def movement_row(envelope: Envelope, pot: Pot) -> dict[str, Any]:
    data = envelope.data
    return {
        "time": envelope.time.isoformat(),
        "event": short_type(envelope),
        "application_id": application_of(envelope),
        "actor": envelope.actor,
        "amount_cents": data.get("amount_cents", data.get("pot_cents")),
        "pot_cents": pot.pot,
        "earmarked_cents": pot.earmarked,
        "reserved_cents": pot.reserved,
        "committed_cents": pot.committed,
        "available_cents": pot.available,
        "id": envelope.id,
    }


def years_of(history: list[Envelope]) -> dict[str, set[int]]:
    """Every fiscal year each application asked for or was funded from (carry-over included)."""
    years: dict[str, set[int]] = {}
    for envelope in history:
        event = typed(envelope)
        if isinstance(event, ApplicationReviewed):
            years.setdefault(event.application_id, set()).update(f.fiscal_year for f in event.funding)
        elif isinstance(event, ApplicationReceived):
            funding = event.application.project.funding
            years.setdefault(event.application_id, set()).update(f.fiscal_year for f in funding)
        elif isinstance(event, FundsEarmarked | FundsReserved | FundsCommitted | FundsReleased):
            years.setdefault(event.application_id, set()).add(event.fiscal_year)
    return years


NEVER = datetime.max.replace(tzinfo=UTC)
LEAVES_LINE = (FundsEarmarked, FundsReserved, ApplicationWithdrawn, ApplicationDecided)


def line_rows(history: list[Envelope], year: int) -> tuple[list[dict[str, Any]], set[str]]:
    """Who waited for this year's money, told which position, and how each one left the line;
    and who is waiting still."""
    years, rows, waiting = years_of(history), [], set()
    for envelope in history:
        event, application_id = typed(envelope), application_of(envelope)
        if application_id is None or year not in years.get(application_id, set()):
            continue
        if isinstance(event, ApplicationWaitlisted):
            waiting.add(application_id)
            what = f"waits at position {event.position} ({event.reason.value})"
        elif isinstance(event, LEAVES_LINE) and application_id in waiting:
            waiting.discard(application_id)
            what = f"leaves the line: {short_type(envelope)}"
        else:
            continue
        rows.append({"time": envelope.time.isoformat(), "application_id": application_id, "what": what})
    return rows, waiting


def place_key(event: ApplicationReceived | ApplicationReviewed) -> tuple[datetime, datetime, str]:
    """An application's place in line as its events record it (an event from before the fair line has
    no place time: its receipt time was its place)."""
    return (event.place_at or event.received_at, event.received_at, event.application_id)


def line_order(history: list[Envelope], applications: set[str]) -> list[str]:
    """The given applications in line order: the place time, then received, then id (services/budget/domain.py)."""
    keys: dict[str, tuple[datetime, datetime, str]] = {}
    completed: dict[str, datetime] = {}
    for envelope in history:
        event = typed(envelope)
        if isinstance(event, ApplicationReceived | ApplicationReviewed) and event.application_id in applications:
            keys.setdefault(event.application_id, place_key(event))
        elif isinstance(event, ApplicationCompleted):
            completed[event.application_id] = event.completed_at
        elif isinstance(event, DocumentsSupplied):  # complete again: the latest completion is the place
            completed[event.application_id] = event.supplied_at
    for application_id, at in completed.items():  # announced attachments: the place is the last one's arrival
        if application_id in keys:
            _, received_at, _ = keys[application_id]
            keys[application_id] = (at, received_at, application_id)
    return sorted(applications, key=lambda a: keys.get(a, (NEVER, NEVER, a)))


def budget_report(envelopes: list[Envelope], year: int) -> dict[str, Any]:
    history = in_order(envelopes)
    movements, final = [], Pot()
    for envelope, touched, pot in replay(history):
        if touched == year:
            movements.append(movement_row(envelope, pot))
            final = pot
    line, still_waiting = line_rows(history, year)
    return {
        "fiscal_year": year,
        "movements": movements,
        "line": line,
        "waiting_now": line_order(history, still_waiting),
        "final": {
            "pot_cents": final.pot,
            "earmarked_cents": final.earmarked,
            "reserved_cents": final.reserved,
            "committed_cents": final.committed,
            "available_cents": final.available,
            "closed": final.closed,
            "pot": euros(final.pot),
        },
    }
