"""Was the line served in order? Replays who stood in line, and checks every reservation.

The order is budget's (``services/budget/domain.py``): by the place time (``place_at``, the
applicant's complete time), then the receipt time, then the application id. An application stands
in line from its receipt (or, if budget saw that first, its review) until it holds money (earmarked
or reserved), is withdrawn or decided; an earmark that lapses without a decision (the amount changed,
the year closed) puts it back in line. An earmark or reservation for application B from fiscal year
Y breaks the order when an application A that comes before B in line and asks for money from Y was
still standing in line and was told to wait (it has a ``budget.waitlisted`` event), unless

- A's category was paused (a paused category waits without blocking), or
- under the ``first_fit`` policy, A did not fit into what was available then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from audit.budget import Pot, apply, place_key
from audit.log import Violation, typed
from schemas.events import (
    ApplicationCompleted,
    ApplicationDecided,
    ApplicationReceived,
    ApplicationReviewed,
    ApplicationWaitlisted,
    ApplicationWithdrawn,
    CategoryPaused,
    CategoryResumed,
    DocumentsSupplied,
    FiscalYearClosed,
    FundsEarmarked,
    FundsReleased,
    FundsReserved,
    ReviewOutcome,
    WaitlistReason,
)

if TYPE_CHECKING:
    from datetime import datetime

    from schemas.envelope import Envelope

Policy = Literal["strict", "first_fit"]


@dataclass
class InLine:
    application_id: str
    order_key: tuple[datetime, datetime, str]
    category: str
    funding: dict[int, int]  # fiscal year -> cents
    entered: str  # the eligible review's event id
    told_reason: WaitlistReason | None = None
    told_at: datetime | None = None


class LineReplay:
    def __init__(self, history: list[Envelope], policy: Policy) -> None:
        self.policy = policy
        self.waiting: dict[str, InLine] = {}
        self.served: dict[str, InLine] = {}
        self.pots: dict[int, Pot] = {}
        self.categories: dict[str, tuple[bool, datetime]] = {}  # category -> (paused, since)
        self.first_reason: dict[str, WaitlistReason] = {}
        # Received with attachments announced: not in line until application.completed gives the place.
        self.incomplete: dict[str, ApplicationReceived] = {}
        # Complete again at this time (requested documents supplied) while its earmark is still held.
        self.moving: dict[str, datetime] = {}
        for envelope in history:  # looking ahead: who was told to wait at some point, and why first
            event = typed(envelope)
            if isinstance(event, ApplicationWaitlisted):
                self.first_reason.setdefault(event.application_id, event.reason)
        self.violations: list[Violation] = []

    def run(self, history: list[Envelope]) -> list[Violation]:
        for envelope in history:
            event = typed(envelope)
            if isinstance(event, FundsEarmarked) or (isinstance(event, FundsReserved) and not event.from_earmark):
                self.reserved(envelope, event)
            else:
                self.track(envelope, event)
            apply(self.pots, envelope, event)
        return self.violations

    def enter(
        self,
        envelope: Envelope,
        event: ApplicationReceived | ApplicationReviewed,
        order_key: tuple[datetime, datetime, str] | None = None,
    ) -> None:
        self.incomplete.pop(event.application_id, None)
        if event.application_id in self.served or event.application_id in self.waiting:
            return
        if isinstance(event, ApplicationReceived):
            category, funding = event.application.project.category, event.application.project.funding
        else:
            category, funding = event.category, event.funding
        self.waiting[event.application_id] = InLine(
            event.application_id,
            order_key or place_key(event),
            category,
            {f.fiscal_year: f.amount_cents for f in funding},
            envelope.id,
        )

    def track(self, envelope: Envelope, event: object) -> None:
        match event:
            case ApplicationReceived() if event.application.attachments:
                self.incomplete[event.application_id] = event
            case ApplicationReceived():
                self.enter(envelope, event)
            case ApplicationCompleted() if event.application_id in self.incomplete:
                received = self.incomplete[event.application_id]
                self.enter(envelope, received, (event.completed_at, received.received_at, received.application_id))
            case ApplicationReviewed(outcome=ReviewOutcome.INELIGIBLE):
                pass  # the decision that follows takes it out of line
            case ApplicationReviewed():
                self.enter(envelope, event)
                if event.application_id in self.waiting:  # what review found is what stands in line
                    entry = self.waiting[event.application_id]
                    entry.category = event.category
                    entry.funding = {f.fiscal_year: f.amount_cents for f in event.funding}
            case DocumentsSupplied():
                self.moved(event.application_id, event.supplied_at)
            case FundsReleased(earmarked=True, reason="amount_changed" | "fiscal_year_closed" | "documents_supplied"):
                back = self.served.pop(event.application_id, None)
                if back is not None:
                    self.waiting[event.application_id] = back
                    self.moved(event.application_id, self.moving.pop(event.application_id, None))
            case ApplicationWaitlisted() if event.application_id in self.waiting:
                entry = self.waiting[event.application_id]
                entry.told_reason, entry.told_at = event.reason, envelope.time
            case CategoryPaused() | CategoryResumed():
                self.categories[event.category] = (isinstance(event, CategoryPaused), envelope.time)
            case FiscalYearClosed(waiting_policy="carry_over"):
                for entry in self.waiting.values():
                    if event.fiscal_year in entry.funding:
                        moved = entry.funding.pop(event.fiscal_year)
                        entry.funding[event.fiscal_year + 1] = entry.funding.get(event.fiscal_year + 1, 0) + moved
            case ApplicationWithdrawn() | ApplicationDecided():
                self.waiting.pop(event.application_id, None)
                self.incomplete.pop(event.application_id, None)

    def moved(self, application_id: str, place_at: datetime | None) -> None:
        """A new place for one waiting in line; one holding an earmark moves once it is released."""
        if place_at is None:
            return
        entry = self.waiting.get(application_id)
        if entry is None:
            self.moving[application_id] = place_at
            return
        _, received_at, _ = entry.order_key
        entry.order_key = (place_at, received_at, application_id)

    def reserved(self, envelope: Envelope, event: FundsReserved | FundsEarmarked) -> None:
        entry = self.waiting.pop(event.application_id, None) or self.served.get(event.application_id)
        if entry is None:
            return  # never received: the chain checks report it
        self.served[event.application_id] = entry
        passed_over = sorted(
            (w for w in self.waiting.values() if w.order_key < entry.order_key and self.held_up(w, event.fiscal_year)),
            key=lambda w: w.order_key,
        )
        if not passed_over:
            return
        first = passed_over[0]  # one violation per reservation, naming the first one passed over
        more = f" (and {len(passed_over) - 1} more after it)" if len(passed_over) > 1 else ""
        message = (
            f"{entry.application_id} {'earmarked' if isinstance(event, FundsEarmarked) else 'reserved'} from "
            f"{event.fiscal_year} while {first.application_id}, "
            f"earlier in line, was still waiting{more}"
        )
        events = (envelope.id, first.entered)
        applications = (entry.application_id, first.application_id)
        self.violations.append(Violation("line-order", message, events, applications, event.fiscal_year))

    def held_up(self, earlier: InLine, year: int) -> bool:
        """Should the earlier application have been served (or have blocked) before this reservation?"""
        if year not in earlier.funding or earlier.application_id not in self.first_reason:
            return False
        if self.paused(earlier):
            return False
        if self.policy == "first_fit":
            return all(y in self.pots and amount <= self.pots[y].available for y, amount in earlier.funding.items())
        return True

    def paused(self, entry: InLine) -> bool:
        """The category's state from the admin events, or else from what budget told the application."""
        admin = self.categories.get(entry.category)
        if admin is not None and (entry.told_at is None or admin[1] >= entry.told_at):
            return admin[0]
        return (entry.told_reason or self.first_reason.get(entry.application_id)) is WaitlistReason.CATEGORY_PAUSED


def line_order_violations(history: list[Envelope], policy: Policy = "strict") -> list[Violation]:
    return LineReplay(history, policy).run(history)
