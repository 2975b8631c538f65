"""An HTTP submission from body to receipt: validate, claim, publish (acks=all), record, answer.

Round trips per accepted submission: one claim (idempotency key, quota, pending claim) and, beside
it, one look at the categories paused by a budget administrator, the broker's acknowledgement, one
record (status row, answer for the key). Application numbers are
drawn from the database sequence in blocks, so ids stay unique across instances and restarts.

A publish the broker did not acknowledge in time has an unknown outcome: the record may still be
appended (a paused broker resumes). The answer says so (503 ``broker.outcome_unknown``), and with an
Idempotency-Key the exact event is kept beside the key. A retry with that key settles it: if intake's
status view has consumed the event (it landed), the answer is the original 202; otherwise the same
bytes are published again. Either way one submission makes one application with one event id,
until the watermark's hold has passed: then the retry reads the log to learn whether the event
landed, and if it did not, the submission is published with a new receipt time and event id
(``Submissions.settle``). A submission that waited longer than the watermark's claim bound for its
claim keeps the claim's time less the bound as its receipt time (see ``watermarks.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from runtime.crashpoints import crash_point
from runtime.db import TRANSIENT_ERRORS
from runtime.problems import Problem
from schemas.envelope import Envelope
from schemas.events import ApplicationReceived
from schemas.topics import APPLICATIONS
from services.intake import store
from services.intake.admission import Check, FullYear, NotAdmitted, admit, received
from services.intake.batching import Grouped
from services.intake.domain import application_id, body_digest, parse_body, validate_application
from services.intake.landing import landed
from services.intake.metrics import count_received
from services.intake.policy import FINAL_RANK, PortalAccess, fiscal_years
from services.intake.publisher import BoundedPublisher, Unacknowledged
from services.intake.watermarks import HOLD

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

    from schemas.application import FundingApplication
    from schemas.rules import Rules
    from services.intake.settings import IntakeSettings

log = logging.getLogger(__name__)

SOURCE = "/egov/intake"
RETRY_AFTER_SECONDS = "5"
PAUSED_NOTICE = "This category is currently paused: the application is kept and waits until funds are released."
NUMBER_BLOCK = 50
# Republishing stops this long before the hold ends: a publish started then is settled (acknowledged or
# given up) well before, and the broker refuses it after RECORD_AGE_MS anyway.
HOLD_MARGIN = timedelta(seconds=10)


def outcome_unknown(what: str, application_id: str, retry: str) -> Problem:
    """503 for a publish the broker did not acknowledge in time: it may have been written or not."""
    return Problem(
        503,
        "broker.outcome_unknown",
        f"The broker did not acknowledge the {what} in time: it may or may not have been accepted",
        f"{retry} after Retry-After seconds; the answer is then its real outcome.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
        extensions={"application_id": application_id},
    )


def submission_outcome_unknown(application_id: str, keyed: bool) -> Problem:
    if keyed:
        return outcome_unknown(
            "submission",
            application_id,
            "Retry with the same Idempotency-Key and body (never a new key)",
        )
    problem = outcome_unknown("submission", application_id, "Look up application_id")
    problem.detail = (
        "This request had no Idempotency-Key, so a retry would be a new submission: look up application_id "
        f"(GET /v1/applications/{application_id}) before submitting again, and send an Idempotency-Key "
        "with every submission, so that a retry returns the submission's real outcome."
    )
    return problem


def refusal_problem(refusal: NotAdmitted) -> Problem:
    """How the HTTP API answers each admission check (the Kafka ingress answers all of them alike)."""
    errors = refusal.problems
    if refusal.check is Check.CONTRACT:
        return Problem(
            422, "application.invalid", "The application is invalid", f"{len(errors)} problem(s) found", errors=errors
        )
    if refusal.check is Check.STORABLE_TEXT:
        return Problem(422, "application.invalid", "The application is invalid", errors=errors)
    if refusal.check is Check.SCOPE:
        return Problem(403, errors[0].code, "Not permitted for this applicant", errors=errors)
    return Problem(409, errors[0].code, "Too many open applications", errors[0].detail, errors=errors)


def screen(body: bytes, rules: Rules, portal: PortalAccess) -> FundingApplication:
    """The application if it passes every check but the quota, else the Problem to answer.

    The quota is asked with no full year here: over HTTP it is checked in the claim, in the same
    statement that takes the applicant's slot, so two requests cannot both take the last one.
    """
    admitted = admit(validate_application(body, rules), portal.ags_prefixes, full_year=None)
    if isinstance(admitted, NotAdmitted):
        raise refusal_problem(admitted)
    return admitted


class ApplicationNumbers:
    """Numbers from the database sequence, fetched a block at a time (gaps are fine, repeats impossible)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._free: list[int] = []
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        if not self._free:
            async with self._lock:
                if not self._free:
                    self._free = list(reversed(await store.application_numbers(self._pool, NUMBER_BLOCK)))
        return self._free.pop()


class Submissions:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: BoundedPublisher,
        rules: Rules,
        settings: IntakeSettings,
        *,
        appended: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool, self.publisher, self.rules, self.settings = pool, publisher, rules, settings
        # Told after every acknowledged publish: watermarks are due (watermarks.py).
        self.appended = appended
        self.numbers = ApplicationNumbers(pool)
        self.patience = timedelta(milliseconds=settings.publish_timeout_ms + 1000)
        self.claim_bound = timedelta(milliseconds=settings.watermark_claim_bound_ms)
        self.quota = store.Quota(
            settings.max_open_applications_per_year, FINAL_RANK, self.patience * 2, self.claim_bound
        )
        # Group commit: concurrent submissions share their claim and record statements.
        self.claim: Grouped[store.Claim, asyncpg.Record] = Grouped(partial(store.claim, pool, self.quota))
        self.record: Grouped[store.Accepted, None] = Grouped(partial(store.record_accepted, pool))

    def receipt(self, app_id: str, received_at: datetime, category_open: bool) -> dict[str, Any]:
        return {
            "application_id": app_id,
            "status": "received",
            "received_at": received_at.isoformat(),
            "status_url": f"{self.settings.public_base_url}/v1/applications/{app_id}",
            "category_open": category_open,
            "category_notice": None if category_open else PAUSED_NOTICE,
        }

    async def submit(self, portal: PortalAccess, body: bytes, key: str | None) -> dict[str, Any]:
        """The receipt for a valid submission, or a Problem."""
        # The receipt time is taken on acceptance, before queueing: first come, first served builds on it.
        received_at = datetime.now(UTC)
        application = screen(body, self.rules, portal)
        app_id = application_id(received_at, await self.numbers.next())
        event_id = str(uuid.uuid4())
        digest = body_digest(parse_body(body))  # valid JSON: screen() parsed it already
        claiming = self.claim(
            store.Claim(
                portal_id=portal.portal_id,
                key=key,
                body_sha256=digest,
                application_id=app_id,
                event_id=event_id,
                received_at=received_at,
                applicant_ags=application.applicant.ags,
                fiscal_years=fiscal_years(application),
            )
        )
        # Read beside the claim, not after it: the receipt tells the pauses published up to now.
        claim, paused = await asyncio.gather(claiming, store.category_paused(self.pool, application.project.category))
        if claim["outcome"] == "cap_exceeded":
            # The same rule again, now with the fact the claim found: the year that is full.
            over_quota = admit(application, portal.ags_prefixes, FullYear(claim["full_year"], self.quota.cap))
            assert isinstance(over_quota, NotAdmitted), "a full year always refuses"
            raise refusal_problem(over_quota)
        if claim["outcome"] == "existing":
            if bytes(claim["body_sha256"]) != digest:
                raise Problem(409, "idempotency.key_reused", "This Idempotency-Key was used with another body")
            return await self.await_original(portal, key or "", application)
        # The time the claim kept: later than the stamp if it waited past the claim bound (watermarks.py).
        return await self.publish(portal, application, app_id, event_id, claim["received_at"], key, paused)

    def received(
        self,
        portal: PortalAccess,
        application: FundingApplication,
        app_id: str,
        event_id: str,
        received_at: datetime,
        paused_by_admin: bool,
    ) -> tuple[ApplicationReceived, Envelope]:
        """The application.received this submission publishes; the same ids make the same event."""
        event = received(
            application,
            application_id=app_id,
            portal_id=portal.portal_id,
            received_at=received_at,
            rules=self.rules,
            submission_id=None,  # an HTTP submission has an Idempotency-Key at most, no submission id
            paused_by_admin=paused_by_admin,
        )
        envelope = Envelope.wrap(
            event,
            source=SOURCE,
            subject=app_id,
            actor=f"portal:{portal.portal_id}",
            event_id=event_id,
            time=received_at,
        )
        return event, envelope

    async def publish(
        self,
        portal: PortalAccess,
        application: FundingApplication,
        app_id: str,
        event_id: str,
        received_at: datetime,
        key: str | None,
        paused_by_admin: bool,
    ) -> dict[str, Any]:
        """Publish and wait for acks=all."""
        event, envelope = self.received(portal, application, app_id, event_id, received_at, paused_by_admin)
        return await self.deliver(portal, event, envelope, key)

    async def deliver(
        self, portal: PortalAccess, event: ApplicationReceived, envelope: Envelope, key: str | None
    ) -> dict[str, Any]:
        try:
            # Stamped with its receipt time: the topic refuses it once too old (watermarks.HOLD).
            await self.publisher.publish(APPLICATIONS, event.application_id, envelope, stamped=event.received_at)
        except Unacknowledged as err:
            if key is not None:
                await self.remember_unacknowledged(portal, key, envelope)
            raise submission_outcome_unknown(event.application_id, keyed=key is not None) from err
        self.appended()
        crash_point("intake.after_publish")
        return await self.accepted(event, key)

    async def remember_unacknowledged(self, portal: PortalAccess, key: str, envelope: Envelope) -> None:
        """Keep the exact event beside the key, for the retry that settles it. If the database is away
        too, the retry rebuilds the event from the key's ids (``settle``)."""
        try:
            await store.remember_unacknowledged(self.pool, portal.portal_id, key, envelope.to_bytes())
        except TRANSIENT_ERRORS:
            log.warning("unacknowledged event not kept", extra={"application_id": envelope.subject}, exc_info=True)

    async def accepted(self, event: ApplicationReceived, key: str | None) -> dict[str, Any]:
        receipt = self.receipt(event.application_id, event.received_at, event.category_open)
        await self.record(store.Accepted(store.StatusRow.of(event), key, receipt))
        count_received(event)  # after the record: acknowledged and written, as the consumer counts
        return receipt

    async def await_original(self, portal: PortalAccess, key: str, application: FundingApplication) -> dict[str, Any]:
        """Another request holds this key: return its answer, or settle it if it ended unacknowledged."""
        while True:
            record = await store.idempotency_record(self.pool, portal.portal_id, key)
            assert record is not None, "a claimed key is only deleted by the request that refused it"
            if record["response"] is not None:
                return dict(json.loads(record["response"]))
            if record["unacknowledged_event"] is not None or datetime.now(UTC) - record["created_at"] > self.patience:
                break
            await asyncio.sleep(0.05)
        return await self.settle(portal, key, application, record)

    async def settle(
        self, portal: PortalAccess, key: str, application: FundingApplication, record: asyncpg.Record
    ) -> dict[str, Any]:
        """The key's first request ended without an acknowledgement (503) or died on the way.

        If intake's status view has consumed its event, it landed: the answer is the original receipt.
        Otherwise, while its receipt time is younger than ``watermarks.HOLD``, its pending claim holds
        the watermark back, so the same event may still be published (it may land twice, with one
        event id and the same bytes, which every consumer de-duplicates; the topic refuses it once
        older than its ``max_record_age_ms``). After that the original can land no more, and the
        watermark no longer waits for it, so it must never be published again with its receipt time:
        ``conclude`` reads its partition to learn whether it landed, and if not, the submission gets a
        new receipt time and event id under the same key (``restamp``): it never holds the line back
        for ever, and never lands behind a watermark."""
        if record["unacknowledged_event"] is not None:
            envelope = Envelope.from_bytes(bytes(record["unacknowledged_event"]))
            event = envelope.payload(ApplicationReceived)
        else:  # it died before it could keep its event: the same ids and receipt time make it again
            paused = await store.category_paused(self.pool, application.project.category)
            event, envelope = self.received(
                portal, application, record["application_id"], record["event_id"], record["received_at"], paused
            )
        if await store.status_exists(self.pool, event.application_id):
            return await self.accepted(event, key)
        age = datetime.now(UTC) - event.received_at
        if age < HOLD - HOLD_MARGIN:
            return await self.deliver(portal, event, envelope, key)
        if age < HOLD:  # it may still be in a paused broker's hands; soon it is certain either way
            raise submission_outcome_unknown(event.application_id, keyed=True)
        return await self.conclude(portal, key, application, event, envelope)

    async def conclude(
        self,
        portal: PortalAccess,
        key: str,
        application: FundingApplication,
        event: ApplicationReceived,
        envelope: Envelope,
    ) -> dict[str, Any]:
        """Past the hold, whether the first event landed is settled on the log: look there."""
        if await landed(self.settings.kafka, APPLICATIONS, envelope, self.publisher.partitions(APPLICATIONS)):
            return await self.accepted(event, key)
        return await self.restamp(portal, key, application, event.application_id)

    async def restamp(
        self, portal: PortalAccess, key: str, application: FundingApplication, app_id: str
    ) -> dict[str, Any]:
        """A new receipt time and event id for a submission whose first event never landed."""
        received_at, event_id = datetime.now(UTC), str(uuid.uuid4())
        row = await store.restamp(self.pool, portal.portal_id, key, event_id, received_at, self.claim_bound)
        if row is None:  # a concurrent retry restamped or answered it: that one is the answer
            return await self.await_original(portal, key, application)
        log.info("submission restamped: its first event never landed", extra={"application_id": app_id})
        paused = await store.category_paused(self.pool, application.project.category)
        event, envelope = self.received(portal, application, app_id, event_id, row["received_at"], paused)
        return await self.deliver(portal, event, envelope, key)
