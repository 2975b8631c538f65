"""Check the guarantees over the whole log. Pure: a list of envelopes in, a report out.

Each check returns the violations it finds, each naming the events that show it:

- final-decision: every received application is decided exactly once, withdrawn, or visibly
  still in progress (reported, not a violation);
- review-before-decision: no application.decided without an application.reviewed before it,
  unless the application was withdrawn;
- decision-chain: following causationid back from each application.decided (through budget and
  review events) reaches an application.reviewed and then the application.received of the same
  application, each written by its topic's one writer; a decision triggered from outside the
  application (a fiscal year closed) must find such a review of it in the log;
- reserved-twice: no application reserved twice for one fiscal year without a release between;
- over-commitment: replaying each pot, reserved plus committed never exceeds it;
- line-order: the line was served in order (see ``audit.line``);
- causation: every causationid names an event in the log;
- signature: with public keys given, every decision carries a valid signature;
- payload / duplicate-id: every event fits its schema, and an id never stands for two events.

Portal input on the submissions topic is not held to these: a malformed submission is the portal's
error, and intake's answer to it (a dead letter or an application.rejected) is what is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from audit.budget import replay
from audit.line import Policy, line_order_violations
from audit.log import Index, Violation, about, application_of, euros, in_order, short_type, typed
from runtime.signing import SignatureStatus, check_signature
from schemas.envelope import EVENT_TYPE_PREFIX, Envelope
from schemas.events import (
    ApplicationCompleted,
    ApplicationDecided,
    ApplicationReceived,
    ApplicationRejected,
    ApplicationReviewed,
    ApplicationWithdrawn,
    FundsCommitted,
    FundsEarmarked,
    FundsReleased,
    FundsReserved,
    ReviewOutcome,
)
from schemas.topics import EVENT_TYPES, SUBMISSIONS, topic_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CHECKS = (
    "final-decision",
    "review-before-decision",
    "decision-chain",
    "reserved-twice",
    "over-commitment",
    "line-order",
    "causation",
    "signature",
    "payload",
    "duplicate-id",
)
WITHDRAWN_REASON = "withdrawn"
NOTICE_PREFIX = EVENT_TYPE_PREFIX + "notification."


@dataclass(frozen=True)
class InProgress:
    application_id: str
    last_event: str
    last_type: str
    since: str


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    in_progress: list[InProgress] = field(default_factory=list)
    events: int = 0
    applications: int = 0
    signatures_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    def count(self, check: str) -> int:
        return sum(v.check == check for v in self.violations)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "applications": self.applications,
            "signatures_checked": self.signatures_checked,
            "checks": {c: self.count(c) for c in CHECKS},
            "violations": [v.as_json() for v in self.violations],
            "in_progress": [vars(p) for p in self.in_progress],
        }


def verify(
    envelopes: Iterable[Envelope],
    *,
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    policy: Policy = "strict",
) -> Report:
    raw = list(envelopes)
    history = in_order(raw)
    index = Index.of(history)
    finals, in_progress = final_decisions(index)
    violations = [
        *duplicate_ids(raw),
        *payloads(history),
        *finals,
        *decisions_reviewed(history),
        *decision_chains(history, index),
        *reserved_twice(history),
        *over_commitment(history),
        *line_order_violations(history, policy),
        *causes_exist(history, index),
        *(signatures(history, public_keys) if public_keys is not None else []),
    ]
    return Report(violations, in_progress, len(history), len(index.by_application), public_keys is not None)


def duplicate_ids(raw: list[Envelope]) -> list[Violation]:
    first: dict[str, Envelope] = {}
    out = []
    for envelope in raw:
        seen = first.setdefault(envelope.id, envelope)
        if seen is not envelope and seen != envelope:
            out.append(Violation("duplicate-id", "one event id stands for two different events", (envelope.id,)))
    return out


def payloads(history: list[Envelope]) -> list[Violation]:
    return [
        Violation("payload", f"{short_type(e)} does not fit its schema", (e.id,), about(e))
        for e in history
        if e.type in EVENT_TYPES and typed(e) is None and not portal_input(e)
    ]


def portal_input(envelope: Envelope) -> bool:
    """Written by a portal, not by us: intake's answer to it is what the log must show."""
    return EVENT_TYPES[envelope.type] in SUBMISSIONS.event_types if envelope.type in EVENT_TYPES else False


def unreadable_records(where: list[str]) -> list[Violation]:
    """Records on a domain topic that are no envelope, as violations; a portal's garbage on the
    submissions topic is not one (intake dead-letters it)."""
    portal = f"{SUBMISSIONS.name}/"
    return [Violation("payload", f"not an envelope: {w}", ()) for w in where if not w.startswith(portal)]


def final_decisions(index: Index) -> tuple[list[Violation], list[InProgress]]:
    out, in_progress = [], []
    for application_id, events in index.by_application.items():
        received = [e for e in events if e.is_a(ApplicationReceived)]
        decided = [e for e in events if e.is_a(ApplicationDecided)]
        withdrawn = [e for e in events if e.is_a(ApplicationWithdrawn)]
        if len(decided) > 1:
            message = f"decided {len(decided)} times"
            out.append(Violation("final-decision", message, tuple(e.id for e in decided), (application_id,)))
        if decided and withdrawn and withdrawn[0].time < decided[0].time and not withdrawal_related(decided[0]):
            message = "decided after it was withdrawn"
            out.append(Violation("final-decision", message, (withdrawn[0].id, decided[0].id), (application_id,)))
        if received and not decided and not withdrawn:
            committed = [e for e in events if e.is_a(FundsCommitted)]
            if committed:  # the grant notice and the decision are issued in one transaction
                message = "funds committed (grant notice issued) but never decided"
                out.append(Violation("final-decision", message, tuple(e.id for e in committed), (application_id,)))
                continue
            # Where it stands: its last step, not the last notice about it.
            last = next((e for e in reversed(events) if not e.type.startswith(NOTICE_PREFIX)), events[-1])
            in_progress.append(InProgress(application_id, last.id, short_type(last), last.time.isoformat()))
    return out, in_progress


def withdrawal_related(decided: Envelope) -> bool:
    return WITHDRAWN_REASON in decided.data.get("reasons", [])


def decisions_reviewed(history: list[Envelope]) -> list[Violation]:
    reviewed, withdrawn, out = set(), set(), []
    for envelope in history:
        event = typed(envelope)
        if isinstance(event, ApplicationReviewed) and event.outcome is not ReviewOutcome.NEEDS_MANUAL_REVIEW:
            reviewed.add(event.application_id)
        elif isinstance(event, ApplicationWithdrawn):
            withdrawn.add(event.application_id)
        elif isinstance(event, ApplicationDecided) and not (
            event.application_id in reviewed | withdrawn or withdrawal_related(envelope)
        ):
            message = "decided without a review before it"
            out.append(Violation("review-before-decision", message, (envelope.id,), (event.application_id,)))
    return out


def written_by_its_writer(
    envelope: Envelope, event_class: type[ApplicationReceived | ApplicationReviewed | ApplicationCompleted]
) -> bool:
    return envelope.is_a(event_class) and envelope.source == f"/egov/{topic_of(event_class).writer}"


def decision_chains(history: list[Envelope], index: Index) -> list[Violation]:
    out = []
    for envelope in history:
        if envelope.is_a(ApplicationDecided):
            broken = chain_break(envelope, index)
            if broken:
                out.append(Violation("decision-chain", f"decided, but {broken}", (envelope.id,), about(envelope)))
    return out


def chain_break(decided: Envelope, index: Index) -> str | None:
    """Why following causationid back from a decision does not reach a review and then the receipt
    of the same application; None if it does."""
    return walk_back(decided, index, reviewed=False, from_outside=review_behind)


def walk_back(
    start: Envelope, index: Index, *, reviewed: bool, from_outside: Callable[[Envelope, Index], str | None] | None
) -> str | None:
    application_id = application_of(start)
    current, seen = start, {start.id}
    while True:
        if current.causationid is None:
            return f"{short_type(current)} {current.id} names no cause"
        cause = index.by_id.get(current.causationid)
        if cause is None:
            return f"its causal chain breaks at {current.causationid}, which is not in the log"
        if cause.id in seen:
            return f"its causal chain loops at {cause.id}"
        seen.add(cause.id)
        if application_of(cause) != application_id:
            if from_outside is not None and current is start:
                return from_outside(start, index)
            return f"its causal chain leaves the application at {cause.id}"
        if cause.is_a(ApplicationReceived):
            if not written_by_its_writer(cause, ApplicationReceived):
                return f"the application.received {cause.id} behind it was not written by intake"
            return None if reviewed else f"no application.reviewed lies between it and {cause.id}"
        if cause.is_a(ApplicationCompleted) and cause.causationid is None:
            # The uploads made it complete, not an event: it stands on the application's receipt.
            if not written_by_its_writer(cause, ApplicationCompleted):
                return f"the application.completed {cause.id} behind it was not written by intake"
            receipts = [e for e in index.by_application.get(application_id or "", []) if e.is_a(ApplicationReceived)]
            if not receipts:
                return f"the application.completed {cause.id} behind it has no receipt in the log"
            return None if reviewed else f"no application.reviewed lies between it and {cause.id}"
        if cause.is_a(ApplicationReviewed):
            if not written_by_its_writer(cause, ApplicationReviewed):
                return f"the application.reviewed {cause.id} behind it was not written by review"
            reviewed = True
        current = cause


def review_behind(decided: Envelope, index: Index) -> str | None:
    """A decision caused from outside its application (a fiscal year closed) acts on what the
    application's last review before it found: that review's own chain must reach the receipt."""
    application_id = application_of(decided) or ""
    reviews = [e for e in index.by_application.get(application_id, []) if e.time <= decided.time]
    reviews = [e for e in reviews if written_by_its_writer(e, ApplicationReviewed)]
    if not reviews:
        return "it was caused from outside the application, and no application.reviewed of it comes before"
    broken = walk_back(reviews[-1], index, reviewed=True, from_outside=None)
    return f"the review it rests on does not lead back to a receipt: {broken}" if broken else None


def reserved_twice(history: list[Envelope]) -> list[Violation]:
    """Money held twice for one application and year: an earmark or reservation while one is active
    (an earmark's own reservation, ``from_earmark``, takes its place)."""
    active: dict[tuple[str, int], tuple[str, bool]] = {}  # -> (event id, is an earmark)
    out = []
    for envelope in history:
        event = typed(envelope)
        if isinstance(event, FundsEarmarked | FundsReserved):
            held = (event.application_id, event.fiscal_year)
            replaces_earmark = (
                isinstance(event, FundsReserved) and event.from_earmark and active.get(held, ("", False))[1]
            )
            if held in active and not replaces_earmark:
                message = f"money held twice for {event.fiscal_year} without a release in between"
                events = (active[held][0], envelope.id)
                out.append(Violation("reserved-twice", message, events, (event.application_id,), event.fiscal_year))
            active[held] = (envelope.id, isinstance(event, FundsEarmarked))
        elif isinstance(event, FundsReleased):
            active.pop((event.application_id, event.fiscal_year), None)
    return out


def over_commitment(history: list[Envelope]) -> list[Violation]:
    """Reported where a pot turns inconsistent, not again for every event while it stays so."""
    out, broken = [], set()
    for envelope, year, pot in replay(history):
        if pot.consistent or year in broken:
            if pot.consistent:
                broken.discard(year)
            continue
        broken.add(year)
        message = (
            f"{year}: earmarked {euros(pot.earmarked)} + reserved {euros(pot.reserved)} + committed "
            f"{euros(pot.committed)} exceeds the pot of {euros(pot.pot)}" + ("" if pot.set_by else " (no pot opened)")
        )
        events = (envelope.id, pot.set_by) if pot.set_by not in (None, envelope.id) else (envelope.id,)
        applications = about(envelope)
        out.append(Violation("over-commitment", message, events, applications, year))
    return out


def causes_exist(history: list[Envelope], index: Index) -> list[Violation]:
    """A submission lives on its topic for a limited time only: the cause of a receipt (or an
    intake rejection) older than that retention has expired, it is not missing."""
    newest = history[-1].time if history else None
    expiry = timedelta(milliseconds=SUBMISSIONS.retention_ms)
    out = []
    for envelope in history:
        if envelope.causationid is None or envelope.causationid in index.by_id:
            continue
        intake = envelope.is_a(ApplicationReceived) or envelope.is_a(ApplicationRejected)
        if intake and newest is not None and SUBMISSIONS.retention_ms > 0 and newest - envelope.time > expiry:
            continue
        message = f"{short_type(envelope)} names a cause that is not in the log: {envelope.causationid}"
        out.append(Violation("causation", message, (envelope.id,), about(envelope)))
    return out


def signatures(history: list[Envelope], keys: Mapping[str, Ed25519PublicKey]) -> list[Violation]:
    out = []
    for envelope in history:
        if not envelope.is_a(ApplicationDecided):
            continue
        status = check_signature(envelope, keys)
        if status is not SignatureStatus.VALID:
            applications = about(envelope)
            out.append(Violation("signature", f"decision signature {status.value}", (envelope.id,), applications))
    return out
