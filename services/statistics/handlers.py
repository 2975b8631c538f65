"""What each event does to an application's figures (one pure function per event type, routing as data),
and the step the agent takes for one record: fold it in once, and say what it changed in the totals.

Counted once, by construction:

- an event whose id the figures already hold changes nothing (at-least-once delivery, a republished outbox
  row);
- the change a record made to the totals is kept with the figures, by its position (topic, offset); when the
  very same record comes again after a crash, that change is handed out again, and every total applies it
  only if it has not yet seen that position (``totals.add``). So a crash between writing the figures and
  writing a total neither loses nor doubles the change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from schemas import events as ev
from schemas.envelope import Envelope
from schemas.topics import EVENT_TYPES
from services.statistics.domain import (
    Cell,
    Contribution,
    Decided,
    Dimension,
    Figure,
    Figures,
    MoneyMoved,
    Received,
    Status,
    contribution,
    difference,
    district_of,
    plus,
    years,
)


def on_received(f: Figures, data: dict[str, Any]) -> Figures:
    received = Received.model_validate(data).application
    return f.model_copy(
        update={
            "category": received.project.category,
            "district": district_of(received.applicant.ags),
            "applicant_kind": received.applicant.kind,
            "requested": years(received.project.funding),
        }
    )


def on_waitlisted(f: Figures, data: dict[str, Any]) -> Figures:
    return f.model_copy(update={"waitlisted": True})


def on_reserved(f: Figures, data: dict[str, Any]) -> Figures:
    moved = MoneyMoved.model_validate(data)
    return f.model_copy(update={"held": plus(f.held, moved.fiscal_year, moved.amount_cents)})


def on_committed(f: Figures, data: dict[str, Any]) -> Figures:
    moved = MoneyMoved.model_validate(data)
    held = plus(f.held, moved.fiscal_year, -moved.amount_cents)
    return f.model_copy(update={"held": held, "committed": plus(f.committed, moved.fiscal_year, moved.amount_cents)})


def on_released(f: Figures, data: dict[str, Any]) -> Figures:
    """Money still held is released first; anything beyond it was committed, and is revoked."""
    moved = MoneyMoved.model_validate(data)
    from_held = min(moved.amount_cents, f.held.get(moved.fiscal_year, 0))
    from_committed = min(moved.amount_cents - from_held, f.committed.get(moved.fiscal_year, 0))
    return f.model_copy(
        update={
            "held": plus(f.held, moved.fiscal_year, -from_held),
            "revoked": plus(f.revoked, moved.fiscal_year, from_committed),
        }
    )


def on_withdrawn(f: Figures, data: dict[str, Any]) -> Figures:
    return f.model_copy(update={"withdrawn": True})


def on_decided(f: Figures, data: dict[str, Any]) -> Figures:
    decided = Decided.model_validate(data)
    granted = years(decided.funding) if decided.decision is Status.APPROVED else {}
    return f.model_copy(
        update={"decision": decided.decision, "granted": granted, "decided_on": decided.decided_at.date()}
    )


Fold = Callable[[Figures, dict[str, Any]], Figures]

# What statistics reacts to: one grep answers it. Any other type (a new one included) is ignored.
FOLDS: dict[str, Fold] = {
    ev.ApplicationReceived.wire_type(): on_received,
    ev.ApplicationWithdrawn.wire_type(): on_withdrawn,
    ev.ApplicationWaitlisted.wire_type(): on_waitlisted,
    ev.FundsReserved.wire_type(): on_reserved,
    ev.FundsCommitted.wire_type(): on_committed,
    ev.FundsReleased.wire_type(): on_released,
    ev.ApplicationDecided.wire_type(): on_decided,
}


# --- one record -----------------------------------------------------------------------------------


class Outcome(StrEnum):
    COUNTED = "counted"  # folded in; the totals move by ``delta``
    DUPLICATE = "duplicate"  # an event id already folded in, from another record: nothing to do
    REPLAYED = "replayed"  # the same record again (after a crash): its recorded change, for totals that lack it
    IGNORED = "ignored"  # a type of the registry statistics does not count (or no application subject)
    UNKNOWN_TYPE = "unknown_type"  # not a type of the registry: counted as every consumer does, not read further
    INVALID = "invalid"  # not an envelope, or the fields statistics reads do not fit


# How many records' changes an application keeps for replay. A record comes again only if the app stopped
# after handling it and before committing its offset (every few seconds): a handful of an application's
# latest records covers that window.
KEPT_CHANGES = 8


@dataclass(frozen=True)
class Step:
    outcome: Outcome
    application_id: str | None = None
    figures: dict[str, Any] | None = None  # the new stored state, when it changed
    delta: Contribution | None = None
    event_type: str | None = None


def handle(value: bytes, position: str, stored: dict[str, Any] | None, envelope: Envelope | None = None) -> Step:
    """Fold one record (``position``: "topic:offset") into the stored state of its application."""
    try:
        envelope = envelope or Envelope.from_bytes(value)
    except ValidationError:
        return Step(Outcome.INVALID)
    subject, event_type = envelope.subject, envelope.type
    fold = FOLDS.get(event_type)
    if fold is None:
        outcome = Outcome.IGNORED if event_type in EVENT_TYPES else Outcome.UNKNOWN_TYPE
        return Step(outcome, subject, event_type=event_type)
    state = stored or {}
    if position in state.get("changes", {}):
        delta = decode_delta(state["changes"][position])
        return Step(Outcome.REPLAYED, subject, delta=delta, event_type=event_type)
    before = Figures.model_validate(state.get("figures", {}))
    if envelope.id in before.seen:
        return Step(Outcome.DUPLICATE, subject, event_type=event_type)
    try:
        after = fold(before, envelope.data)
    except ValidationError:
        return Step(Outcome.INVALID, subject, event_type=event_type)
    after = after.model_copy(update={"seen": (*before.seen, envelope.id)})
    delta = difference(contribution(before), contribution(after))
    changes = {**state.get("changes", {}), position: encode_delta(delta)}
    kept = dict(list(changes.items())[-KEPT_CHANGES:])
    new_state = {"figures": after.model_dump(mode="json", exclude_defaults=True), "changes": kept}
    return Step(Outcome.COUNTED, subject, new_state, delta, event_type)


def encode_delta(delta: Contribution) -> list[list[Any]]:
    return [[*cell, *figure] for cell, figure in delta.items()]


def decode_delta(rows: list[list[Any]]) -> Contribution:
    return {Cell(Dimension(d), p, v, Status(s)): Figure(n, c) for d, p, v, s, n, c in rows}
