"""The metrics every service shares, one naming scheme: ``egov_*_total``, ``egov_*_seconds``.

Labels carry topic, event type, route and outcome: bounded sets, never ids or personal data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from runtime.outbox import Outgoing
    from schemas.envelope import Event

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS_CONSUMED = Counter("egov_events_consumed_total", "Events consumed, by outcome", ["topic", "type", "outcome"])
EVENTS_PRODUCED = Counter("egov_events_produced_total", "Events published to Kafka", ["topic", "type"])
HANDLER_SECONDS = Histogram(
    "egov_handler_seconds", "Time to handle one event, transaction included", ["type"], buckets=LATENCY_BUCKETS
)
HANDLER_ERRORS = Counter("egov_handler_errors_total", "Handler failures by kind", ["type", "kind"])
DEAD_LETTERS = Counter("egov_dead_letters_total", "Messages sent to a dead-letter topic", ["topic", "reason"])
# Records skipped because the broker refused even a bare dead letter for them: the consumer moved on.
DEAD_LETTERS_LOST = Counter(
    "egov_dead_letters_lost_total", "Records skipped because no dead letter for them was taken", ["topic", "reason"]
)
OUTBOX_PENDING = Gauge("egov_outbox_pending", "Outbox rows not yet published")
CONSUMER_LAG = Gauge("egov_consumer_lag", "Messages behind the partition end", ["topic", "partition"])
HTTP_REQUESTS = Counter("egov_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "egov_http_request_seconds", "HTTP request latency", ["method", "route"], buckets=LATENCY_BUCKETS
)
HTTP_AUTH_THROTTLED = Counter(
    "egov_http_auth_throttled_total", "Requests refused with 429 after repeated failed authentication"
)
HTTP_READ_TIMEOUTS = Counter(
    "egov_http_read_timeouts_total", "Connections closed for not sending a whole request in time", ["phase"]
)


# What a consumer's records can come to, each a label value (runtime.consumer, runtime.deadletters).
CONSUMED_OUTCOMES = ("handled", "duplicate", "ignored", "unknown_type")
HANDLER_ERROR_KINDS = ("invalid_payload", "transient", "handler")
DEAD_LETTER_REASONS = ("undecodable", "wrong_key", "invalid_payload")


def initialise_consumer_series(topics: Mapping[str, Sequence[str]], routed: Sequence[str]) -> None:
    """Every series a consumer can move, at zero from its start: a rate or an alert over a counter that
    does not exist yet sees nothing, and its first increment would look like no change at all.
    ``topics`` maps each topic read to the event types it declares; ``routed`` are the types handled."""
    for topic, declared in topics.items():
        for event_type in declared:
            outcomes = CONSUMED_OUTCOMES[:2] if event_type in routed else ("ignored",)
            for outcome in outcomes:
                EVENTS_CONSUMED.labels(topic, event_type, outcome)
        EVENTS_CONSUMED.labels(topic, "unknown", "unknown_type")
        for reason in DEAD_LETTER_REASONS:
            DEAD_LETTERS.labels(topic, reason)
            DEAD_LETTERS_LOST.labels(topic, reason)
    for event_type in routed:
        HANDLER_SECONDS.labels(event_type)
        for kind in HANDLER_ERROR_KINDS:
            HANDLER_ERRORS.labels(event_type, kind)


# Domain metrics are counted from the events a transaction staged, after it committed: a batch that fails
# and is handled again one event at a time is counted once, and a rolled-back command not at all.
Committed = Callable[[Sequence["Outgoing"]], None]


def nothing_counted(_: Sequence[Outgoing]) -> None:
    return None


def count_committed(counters: Mapping[type[Event], Callable[[Any], None]]) -> Committed:
    """A ``Committed`` hook that hands each committed event's payload to the counter of its type."""
    by_wire_type = {event_class.wire_type(): (event_class, counter) for event_class, counter in counters.items()}

    def counted(outgoing: Sequence[Outgoing]) -> None:
        for out in outgoing:
            entry = by_wire_type.get(out.envelope.type)
            if entry:
                event_class, counter = entry
                counter(out.envelope.payload(event_class))

    return counted
