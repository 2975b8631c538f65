"""The log as one history: each event once, oldest first, with its typed payload at hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from schemas.envelope import EVENT_TYPE_PREFIX, Envelope, Event
from schemas.topics import EVENT_TYPES, topic_of

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class Violation:
    """One broken guarantee, with the events that show it."""

    check: str
    message: str
    events: tuple[str, ...]
    applications: tuple[str, ...] = ()
    fiscal_year: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "message": self.message,
            "events": list(self.events),
            "applications": list(self.applications),
            "fiscal_year": self.fiscal_year,
        }


def in_order(envelopes: Iterable[Envelope]) -> list[Envelope]:
    """Each event once (a republished outbox row repeats its id), oldest first; ties keep read order."""
    first: dict[str, Envelope] = {}
    for envelope in envelopes:
        first.setdefault(envelope.id, envelope)
    return sorted(first.values(), key=lambda e: e.time)


def typed(envelope: Envelope) -> Event | None:
    """The payload as its event class; None for an unknown type or a payload that does not fit."""
    event_class = EVENT_TYPES.get(envelope.type)
    if event_class is None:
        return None
    try:
        return event_class.model_validate(envelope.data)
    except ValidationError:
        return None


def short_type(envelope: Envelope) -> str:
    return envelope.type.removeprefix(EVENT_TYPE_PREFIX)


def topic_name(envelope: Envelope) -> str:
    event_class = EVENT_TYPES.get(envelope.type)
    return topic_of(event_class).name if event_class else "?"


def application_of(envelope: Envelope) -> str | None:
    application_id = envelope.data.get("application_id")
    return application_id if isinstance(application_id, str) else None


def about(envelope: Envelope) -> tuple[str, ...]:
    """The application an event is about, as a violation names it (none for budget administration)."""
    application_id = application_of(envelope)
    return (application_id,) if application_id else ()


def euros(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100:,}.{abs(cents) % 100:02d} EUR"


@dataclass
class Index:
    """Where each application's events are, for checks that look across its history."""

    by_application: dict[str, list[Envelope]] = field(default_factory=dict)
    by_id: dict[str, Envelope] = field(default_factory=dict)

    @classmethod
    def of(cls, history: list[Envelope]) -> Index:
        index = cls()
        for envelope in history:
            index.by_id[envelope.id] = envelope
            application_id = application_of(envelope)
            if application_id:
                index.by_application.setdefault(application_id, []).append(envelope)
        return index
