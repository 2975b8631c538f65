"""CloudEvents 1.0 envelope shared by every event on every topic.

An envelope wraps one :class:`Event` payload. ``subject`` and ``correlationid``
name the application (or the fiscal year for budget administration), and
``causationid`` names the event that caused this one, so the log alone can be
walked as a causal graph.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import builtins

EVENT_TYPE_PREFIX = "de.thueringen.egov."


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event payload: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # e.g. "application.received.v1"; the wire type is EVENT_TYPE_PREFIX + this.
    event_type: ClassVar[str]

    @classmethod
    def wire_type(cls) -> str:
        return EVENT_TYPE_PREFIX + cls.event_type


E = TypeVar("E", bound=Event)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, description="URI-reference of the producing service, e.g. /egov/intake")
    type: str = Field(min_length=1, description="Versioned event type, e.g. de.thueringen.egov.application.received.v1")
    subject: str = Field(min_length=1, description="The application id (or fiscal year) the event is about")
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str = Field(min_length=1, description="The application this event belongs to")
    causationid: str | None = Field(default=None, description="Id of the event that caused this one")
    actor: str | None = Field(default=None, description="Principal who caused the event (portal, caseworker, admin)")
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        source: str,
        subject: str,
        cause: Envelope | None = None,
        causation_id: str | None = None,
        actor: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> Self:
        """Wrap a payload. The correlation id is always the subject (the application), even when
        the cause is another application's event (a release that promotes a waiting one).
        ``causation_id`` names a cause known only by its id (e.g. read back from a table)."""
        return cls(
            id=event_id or str(uuid.uuid4()),
            source=source,
            type=event.wire_type(),
            subject=subject,
            time=time or utc_now(),
            correlationid=subject,
            causationid=cause.id if cause else causation_id,
            actor=actor,
            data=event.model_dump(mode="json"),
        )

    def is_a(self, event_class: builtins.type[Event]) -> bool:
        return self.type == event_class.wire_type()

    def payload(self, event_class: builtins.type[E]) -> E:
        """The typed payload; raises pydantic.ValidationError if it does not fit."""
        if not self.is_a(event_class):
            raise TypeError(f"envelope of type {self.type} is not a {event_class.__name__}")
        return event_class.model_validate(self.data)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        return cls.model_validate_json(raw)
