"""Intake's domain metrics (the shared ``egov_*`` plumbing metrics live in runtime.metrics).

Labels are bounded sets: a category id from the rules file, a channel, an error code. Each metric
has one counting function; the Kafka ingress counts through ``KAFKA_INGRESS_COMMITTED``, from the
events its transaction committed, the HTTP path once its own write succeeded.
"""

from __future__ import annotations

from prometheus_client import Counter

from runtime.metrics import count_committed
from schemas.events import ApplicationReceived, ApplicationRejected

APPLICATIONS_RECEIVED = Counter(
    "egov_applications_received_total", "Applications accepted at intake (received event acknowledged)", ["category"]
)
SUBMISSIONS_REFUSED = Counter(
    "egov_intake_submissions_refused_total",
    "Submissions refused at intake, by channel (http, kafka) and problem code",
    ["channel", "code"],
)


def count_received(event: ApplicationReceived) -> None:
    APPLICATIONS_RECEIVED.labels(event.application.project.category).inc()


def count_refused(channel: str, code: str) -> None:
    SUBMISSIONS_REFUSED.labels(channel, code).inc()


def count_rejected(event: ApplicationRejected) -> None:
    """Only the Kafka ingress publishes application.rejected; the HTTP path answers with a problem."""
    count_refused("kafka", event.errors[0].code if len(event.errors) == 1 else "application.invalid")


KAFKA_INGRESS_COMMITTED = count_committed({ApplicationReceived: count_received, ApplicationRejected: count_rejected})
