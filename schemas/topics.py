"""The topic registry: every topic declared once, with its key, events, single writer and readers.

Code never spells a topic name inline; it names a ``Topic`` from here. The broker's ACLs are generated
from the same declarations (``python -m runtime.acls``), so who may write or read a topic is said once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas import events as ev

if TYPE_CHECKING:
    from schemas.envelope import Event

FOREVER = -1
# The writer of the submissions topic: every registered portal principal, not one service.
PORTALS = "portals"
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000
# The largest record a client of ours writes: aiokafka's max_request_size, which the producer checks
# before sending (the broker's message.max.bytes default, 1048588, is a little above it).
MAX_MESSAGE_BYTES = 1_048_576
# How old (by its own timestamp) an application record may be when the broker appends it. Intake's HTTP
# publisher stamps each application.received with its receipt time, so a publish given up (503) that a
# paused broker still holds cannot land after this: intake's watermark stops waiting for it then
# (services/intake/watermarks.py). Far above a publish's own bound (INTAKE_PUBLISH_TIMEOUT_MS), and above
# the outbox relay's delivery timeout (30 s), so an idempotent producer's batch is never refused as too
# old (a refused batch would leave a gap in its sequence numbers) unless a broker held it past this.
RECORD_AGE_MS = 60_000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    event_types: tuple[type[Event], ...]
    writer: str
    # The services that consume it. Auditors read every topic, downstream systems the public ones.
    readers: tuple[str, ...] = ()
    partitions: int = 6
    retention_ms: int = FOREVER
    public: bool = False
    description: str = ""
    # The broker, not the producer, stamps each record's time: a signature's age is judged against it.
    broker_timestamps: bool = False
    # Kafka headers every record carries (name -> meaning), for writers outside the backend.
    required_headers: tuple[tuple[str, str], ...] = ()
    # What one record on it may weigh; a dead letter is cut to fit its topic's (runtime.deadletters).
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # The broker refuses a record whose (producer's) timestamp is older than this: a publish given up
    # can then land only within it of its timestamp, however long the broker was paused.
    max_record_age_ms: int | None = None

    def declares(self, event_type: str) -> bool:
        """Whether the registry lists ``event_type`` (the wire type) for this topic."""
        return any(cls.wire_type() == event_type for cls in self.event_types)

    @property
    def config(self) -> dict[str, str]:
        config = {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}
        if self.broker_timestamps:
            config["message.timestamp.type"] = "LogAppendTime"
        if self.max_record_age_ms is not None:
            config["message.timestamp.before.max.ms"] = str(self.max_record_age_ms)
        return config


# Standard Webhooks-style record signatures (runtime.record_signatures), by the portal's own key.
PORTAL_SIGNATURE_HEADERS = (
    ("egov-signature-id", "The envelope's id, exactly as in the record value"),
    (
        "egov-signature-timestamp",
        "Unix seconds when the portal signed; refused if it lies more than the tolerance "
        "(default 300 s) from the record's broker timestamp, either way",
    ),
    (
        "egov-signature",
        'Space-separated "v1,<base64 HMAC-SHA256>" over "{id}.{timestamp}." + the exact value '
        "bytes, keyed with the base64-decoded part of the portal's whsec_ secret; one per key while rotating",
    ),
)


SUBMISSIONS = Topic(
    name="egov.submissions.v1",
    key="submission_id",
    event_types=(ev.SubmitApplication,),
    writer=PORTALS,
    readers=("intake",),
    retention_ms=THIRTY_DAYS_MS,
    description="Submissions published by portals that run their own producers; intake checks each record's "
    "signature by the portal it names, then validates it.",
    broker_timestamps=True,
    required_headers=PORTAL_SIGNATURE_HEADERS,
)
APPLICATIONS = Topic(
    name="egov.applications.v1",
    key="application_id",
    event_types=(
        ev.ApplicationReceived,
        ev.ApplicationRejected,
        ev.ApplicationWithdrawn,
        ev.ApplicationCompleted,
        ev.DocumentsSupplied,
        ev.IntakeWatermark,
    ),
    writer="intake",
    # statistics: category, district and applicant kind of each application (decisions do not carry them).
    readers=("intake", "review", "budget", "notify", "statistics"),
    description="Applications accepted, complete (all announced attachments arrived), complete again (the"
    " requested documents arrived), rejected at intake, withdrawn; and intake's watermarks, one per partition"
    " (every earlier place is already on it), which only budget reads.",
    max_record_age_ms=RECORD_AGE_MS,
)
REVIEWS = Topic(
    name="egov.reviews.v1",
    key="application_id",
    event_types=(ev.ApplicationReviewed, ev.DocumentsRequested, ev.ReviewProposed),
    writer="review",
    readers=("intake", "budget", "notify"),
    description="Eligibility review results with the rules version and every finding.",
)
BUDGET = Topic(
    name="egov.budget.v1",
    key="application_id",
    event_types=(ev.FundsEarmarked, ev.FundsReserved, ev.FundsCommitted, ev.ApplicationWaitlisted, ev.FundsReleased),
    writer="budget",
    readers=("intake", "notify", "statistics"),
    description="Reservations, commitments, releases and waitlist positions per application.",
)
BUDGET_ADMIN = Topic(
    name="egov.budget-admin.v1",
    key="fiscal_year",
    event_types=(ev.FiscalYearOpened, ev.PotAdjusted, ev.CategoryPaused, ev.CategoryResumed, ev.FiscalYearClosed),
    writer="budget",
    # Intake follows the category pauses, so a receipt tells whether its category is open.
    readers=("intake",),
    partitions=1,
    description="Fiscal-year pots opened and adjusted, and categories paused and resumed, by budget administrators.",
)
DECISIONS = Topic(
    name="egov.decisions.v1",
    key="application_id",
    event_types=(ev.ApplicationDecided,),
    writer="budget",
    readers=("intake", "notify", "statistics"),
    public=True,
    description="Final decisions: the public contract for downstream systems.",
)
NOTIFICATIONS = Topic(
    name="egov.notifications.v1",
    key="application_id",
    event_types=(ev.NotificationDelivered, ev.NotificationFailed),
    writer="notify",
    readers=("intake",),
    description="Every notice delivered to, or failed for, a municipality.",
)


def dead_letters(service: str) -> Topic:
    """Each consuming service owns its dead-letter topic, so every topic keeps a single writer."""
    return Topic(
        name=f"egov.{service}.deadletter.v1",
        key="original key",
        event_types=(),
        writer=service,
        partitions=1,
        description=f"Messages {service} could not decode or handle, with the reason in headers.",
    )


DOMAIN_TOPICS = (SUBMISSIONS, APPLICATIONS, REVIEWS, BUDGET, BUDGET_ADMIN, DECISIONS, NOTIFICATIONS)
SERVICES = ("intake", "review", "budget", "notify")
ALL_TOPICS = DOMAIN_TOPICS + tuple(dead_letters(s) for s in SERVICES)

# Events about a stream's progress, not about any application (intake's watermarks): declared, so every
# reader knows them, and skipped by those that read history (the audit, the fault suite's checks).
STREAM_MARKERS = frozenset({ev.IntakeWatermark.wire_type()})

EVENT_TYPES: dict[str, type[Event]] = {cls.wire_type(): cls for topic in DOMAIN_TOPICS for cls in topic.event_types}


def topic_of(event_class: type[Event]) -> Topic:
    """The one topic an event type is written to."""
    for topic in DOMAIN_TOPICS:
        if event_class in topic.event_types:
            return topic
    raise KeyError(f"{event_class.__name__} is on no topic")
