"""Notify delivers every notice by signed callback and e-mail, retries, dead-letters, and redelivers.

Real PostgreSQL (a fresh database per test), the real broker (notification events and the
dead-letter topic), a real SMTP server and real HTTP receivers on 127.0.0.1. Events go through
notify's handlers inside the runtime's inbox transaction; the Deliverer runs in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from runtime.consumer import handle_once
from runtime.db import create_pool, migrate
from runtime.kafka import KafkaAccess, make_producer
from runtime.locks import AdvisoryLock
from runtime.outbox import OutboxRelay
from schemas import events as ev
from schemas.application import FundingApplication, FundingYear
from schemas.envelope import Envelope, Event
from schemas.topics import NOTIFICATIONS, dead_letters
from services.notify.delivery import Deliverer
from services.notify.destinations import Resolve
from services.notify.domain import berlin_time, notice_id
from services.notify.endpoints import register
from services.notify.handlers import routes
from services.notify.senders import CallbackSender, EmailSender, Sender
from services.notify.settings import NotifySettings
from services.notify.store import revoke_endpoint
from services.notify.topology import MIGRATIONS
from tests.support import (
    REPO,
    TEST_SLOT,
    SmtpSink,
    as_principal,
    fresh_database,
    read_topic,
    sample_application,
    service_kafka_settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka(scratch_kafka: KafkaAccess) -> KafkaAccess:
    """In-process notify handles hand-made events here: on the session's scratch broker, not the shared log."""
    return scratch_kafka


CONSUMER = "notify-notices"
PORTAL = "portal-a"


# --- a portal's receiver ------------------------------------------------------------------------


@dataclass
class Call:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.body)["data"]  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A portal's callback endpoint: records every request; can fail, be slow, go down, come back."""

    fail_first: int = 0
    delay: float = 0.0
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.read()
            status = 503 if len(self.calls) < self.fail_first else 204
            self.calls.append(Call({k.lower(): v for k, v in request.headers.items()}, body, status))
            await asyncio.sleep(self.delay)
            return web.Response(status=status)
        finally:
            self.in_flight -= 1

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def accepted(self) -> list[Call]:
        return [c for c in self.calls if c.status < 300]


async def fake_public_dns(host: str, port: int) -> list[str]:
    """Names under .example stand for a public address; the receivers here are on 127.0.0.1."""
    if host.endswith(".example"):
        return ["93.184.215.14"]
    raise OSError(f"{host} is not known to the test resolver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- notify, in this process ---------------------------------------------------------------------


@dataclass
class Notify:
    pool: asyncpg.Pool
    settings: NotifySettings
    deliverer: Deliverer
    resolve: Resolve

    async def feed(self, *envelopes: Envelope) -> None:
        handlers = routes()
        for envelope in envelopes:
            await handle_once(self.pool, CONSUMER, handlers[envelope.type], envelope)
        self.deliverer.wake()

    async def register(self, portal_id: str, url: str) -> str:
        async with self.pool.acquire() as conn:
            allow_loopback = self.settings.allow_loopback_callbacks
            return await register(conn, portal_id, url, allow_loopback=allow_loopback, resolve=self.resolve)

    async def notice(self, notice: uuid.UUID) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM notices WHERE notice_id = $1", notice)
        assert row is not None, f"notice {notice} was never stored"
        return row

    async def wait_for(self, sql: str, *args: Any, timeout: float = 20.0) -> None:
        """Until the query returns true."""
        deadline = time.monotonic() + timeout
        while not await self.pool.fetchval(sql, *args):
            assert time.monotonic() < deadline, f"timed out waiting for: {sql} {args}"
            await asyncio.sleep(0.05)

    async def wait_status(self, notices: list[uuid.UUID], status: str, timeout: float = 20.0) -> None:
        sql = "SELECT count(*) = cardinality($1::uuid[]) FROM notices WHERE notice_id = ANY($1) AND status = $2"
        await self.wait_for(sql, notices, status, timeout=timeout)


def notify_settings(dsn: str, kafka: KafkaAccess, smtp_port: int, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "database_url": dsn,
        **service_kafka_settings(kafka, "notify"),
        "environment": "test",
        "smtp_port": smtp_port,
        "first_retry_seconds": 0.05,
        "max_retry_seconds": 0.3,
        "poll_seconds": 0.05,
        "callback_timeout_seconds": 2.0,
        "callback_connect_timeout_seconds": 1.0,
        "smtp_timeout_seconds": 4.0,
        "lease_seconds": 10.0,
        "claim_ahead": 2,
        "allow_loopback_callbacks": True,  # the receivers are on 127.0.0.1
        **overrides,
    }
    return NotifySettings(**values)


@contextlib.asynccontextmanager
async def running_notify(
    admin_dsn: str,
    kafka: KafkaAccess,
    smtp_port: int,
    *,
    resolve: Resolve = fake_public_dns,
    **overrides: Any,
) -> AsyncIterator[Notify]:
    dsn = await fresh_database(admin_dsn, f"egov_test{TEST_SLOT}_notify_it")
    settings = notify_settings(dsn, kafka, smtp_port, **overrides)
    pool = await create_pool(dsn)
    await migrate(pool, MIGRATIONS)
    producer = make_producer(as_principal(kafka, "notify"), f"notify-it-{uuid.uuid4().hex[:6]}")
    await producer.start()
    relay = OutboxRelay(pool, producer)
    await relay.start()
    email, callback = ev.NoticeChannel.EMAIL.value, ev.NoticeChannel.CALLBACK.value
    senders: dict[str, Sender] = {email: EmailSender(settings), callback: CallbackSender(settings, resolve)}
    deliverer = Deliverer(pool, relay, settings, senders)
    await deliverer.start()
    try:
        yield Notify(pool, settings, deliverer, resolve)
    finally:
        await deliverer.stop()
        await relay.stop()
        await producer.stop()
        await pool.close()


@pytest.fixture
async def notify(pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink) -> AsyncIterator[Notify]:
    async with running_notify(pg_admin_dsn, kafka, smtp_sink.port) as running:
        yield running


# --- events, as the other services publish them -------------------------------------------------

RECEIVED_AT = datetime(2027, 1, 15, 9, 30, tzinfo=UTC)  # 10:30 in Berlin
DECIDED_AT = datetime(2027, 7, 1, 8, 5, tzinfo=UTC)  # 10:05 in Berlin


def new_application_id() -> str:
    return f"TH-EGOV-2027-{random.randrange(10**9):09d}"


def wrap(event: Event, subject: str, source: str = "/egov/test") -> Envelope:
    """Through the wire and back, as notify receives it."""
    return Envelope.from_bytes(Envelope.wrap(event, source=source, subject=subject).to_bytes())


def received(app_id: str, portal: str = PORTAL, *, category_open: bool = True) -> Envelope:
    application = FundingApplication.model_validate(sample_application())
    event = ev.ApplicationReceived(
        application_id=app_id,
        portal_id=portal,
        received_at=RECEIVED_AT,
        category_open=category_open,
        application=application,
    )
    return wrap(event, app_id, "/egov/intake")


def reviewed(app_id: str, outcome: ev.ReviewOutcome, findings: list[ev.RuleFinding]) -> Envelope:
    event = ev.ApplicationReviewed(
        application_id=app_id,
        outcome=outcome,
        rules_version="egov-2024-v1",
        findings=findings,
        reviewer="automatic",
        category="dms_eservices",
        amount_cents=9_600_000,
        funding=[FundingYear(fiscal_year=2027, amount_cents=9_600_000)],
        received_at=RECEIVED_AT,
        ready_at=RECEIVED_AT,
    )
    return wrap(event, app_id, "/egov/review")


def finding(rule_id: str, passed: bool, de: str, needs_person: bool = False) -> ev.RuleFinding:
    return ev.RuleFinding(rule_id=rule_id, passed=passed, message_de=de, message_en=de, needs_person=needs_person)


def waitlisted(app_id: str, position: int) -> Envelope:
    event = ev.ApplicationWaitlisted(
        application_id=app_id,
        position=position,
        reason=ev.WaitlistReason.INSUFFICIENT_FUNDS,
        amount_cents=9_600_000,
        ready_at=RECEIVED_AT,
    )
    return wrap(event, app_id, "/egov/budget")


def reserved(app_id: str, year: int, cents: int) -> Envelope:
    """Provisional, as budget says with a withdrawal window: a reservation notice of its own is owed."""
    event = ev.FundsReserved(
        application_id=app_id, fiscal_year=year, amount_cents=cents, ready_at=RECEIVED_AT, provisional=True
    )
    return wrap(event, app_id, "/egov/budget")


def released(app_id: str, year: int, cents: int, reason: str) -> Envelope:
    event = ev.FundsReleased(application_id=app_id, fiscal_year=year, amount_cents=cents, reason=reason)
    return wrap(event, app_id, "/egov/budget")


def decided(app_id: str, decision: ev.Decision, reasons: list[str]) -> Envelope:
    approved = decision is ev.Decision.APPROVED
    event = ev.ApplicationDecided(
        application_id=app_id,
        decision=decision,
        amount_cents=9_600_000 if approved else 0,
        funding=[FundingYear(fiscal_year=2027, amount_cents=9_600_000)] if approved else [],
        reasons=reasons,
        rules_version="egov-2024-v1",
        received_at=RECEIVED_AT,
        decided_at=DECIDED_AT,
    )
    return wrap(event, app_id, "/egov/budget")


def documents_requested(app_id: str) -> Envelope:
    message = "Bitte reichen Sie folgende Unterlagen nach: security_concept. Bis dahin ruht die Prüfung."
    event = ev.DocumentsRequested(
        application_id=app_id, requested_by="cw-1", documents=["security_concept"], message_de=message
    )
    return wrap(event, app_id, "/egov/review")


def withdrawn(app_id: str) -> Envelope:
    return wrap(ev.ApplicationWithdrawn(application_id=app_id, portal_id=PORTAL, reason="verschoben"), app_id)


def rejected_at_intake(submission_id: str) -> Envelope:
    errors = [
        ev.ProblemItem(code="ags_not_thuringian", pointer="/applicant/ags", detail="Die AGS beginnt nicht mit 16."),
        ev.ProblemItem(code="amount_too_high", pointer="/project/requested_amount_cents", detail="Betrag zu hoch."),
    ]
    event = ev.ApplicationRejected(portal_id=PORTAL, submission_id=submission_id, errors=errors)
    return wrap(event, f"{PORTAL}/{submission_id}", "/egov/intake")


def ids(envelopes: list[Envelope], channel: str) -> list[uuid.UUID]:
    return [notice_id(e.id, channel) for e in envelopes]


def text_of(message: Message, subtype: str = "plain") -> str:
    part = next(p for p in message.walk() if p.get_content_type() == f"text/{subtype}")
    return str(part.get_content())  # type: ignore[attr-defined]


async def notification_events(kafka: KafkaAccess, notices: set[str], want: Callable[[list[Envelope]], bool]) -> list:  # type: ignore[type-arg]
    def ours(seen: list[Envelope]) -> list[Envelope]:
        return [e for e in seen if e.data.get("notice_id") in notices]

    return ours(await read_topic(kafka, NOTIFICATIONS, lambda seen: want(ours(seen)), timeout=90))


async def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def counter(notice_type: str, channel: str, outcome: str) -> float:
    labels = {"notice_type": notice_type, "channel": channel, "outcome": outcome}
    return REGISTRY.get_sample_value("egov_notices_total", labels) or 0.0


# --- every notice type ------------------------------------------------------------------------


async def test_every_notice_type_arrives_signed_in_german_with_the_right_amounts(
    pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink
) -> None:
    a, b, c, d, e = (new_application_id() for _ in range(5))
    submission = f"sub-{uuid.uuid4().hex[:8]}"
    ineligible = [
        finding("R01", True, "Antragsteller und Partner sind Thüringer Kommunen."),
        finding("R05", False, "Die Zuwendung liegt außerhalb von Mindest- und Höchstbetrag."),
    ]
    manual = [finding("R09", True, "Betrag über der Schwelle: zwei Sachbearbeitende.", needs_person=True)]
    stream = [
        *(received(a), documents_requested(a), waitlisted(a, 3), reserved(a, 2027, 9_600_000)),
        decided(a, ev.Decision.APPROVED, []),
        *(received(b, category_open=False), reviewed(b, ev.ReviewOutcome.INELIGIBLE, ineligible)),
        *(received(c), reviewed(c, ev.ReviewOutcome.NEEDS_MANUAL_REVIEW, manual), waitlisted(c, 1)),
        decided(c, ev.Decision.REJECTED, ["insufficient_funds"]),
        *(received(d), reserved(d, 2027, 6_000_000), reserved(d, 2028, 3_600_000), withdrawn(d)),
        received(e, "portal-without-endpoint"),
        rejected_at_intake(submission),
    ]
    receiver = await Receiver().start()
    before = counter("approved", "callback", "delivered")
    try:
        async with running_notify(pg_admin_dsn, kafka, smtp_sink.port) as notify:
            secret = await notify.register(PORTAL, receiver.url)
            await notify.feed(*stream)
            mails_expected = [x for x in stream if x.type != ev.ApplicationRejected.wire_type()]
            callbacks_expected = [x for x in stream if x.subject != e]
            everything = ids(mails_expected, "email") + ids(callbacks_expected, "callback")
            await notify.wait_status(everything, "delivered")
            unexpected = await notify.pool.fetchval(
                "SELECT count(*) FROM notices WHERE NOT notice_id = ANY($1)", everything
            )
            assert unexpected == 0, "a notice nobody was owed"
    finally:
        await receiver.stop()

    # Callbacks: each once, each signed as Standard Webhooks says, each carrying the stable notice id.
    assert len(receiver.accepted) == len(callbacks_expected)
    assert {c.webhook_id for c in receiver.accepted} == {str(i) for i in ids(callbacks_expected, "callback")}
    verified = [Webhook(secret).verify(c.body, c.headers) for c in receiver.accepted]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for body in verified:
        assert body["type"] == f"notice.{body['data']['notice_type']}"
        by_type.setdefault(body["data"]["notice_type"], []).append(body["data"])
    assert sorted((t, len(v)) for t, v in by_type.items()) == [
        ("approved", 1), ("documents_requested", 1), ("ineligible", 1), ("intake_rejected", 1),
        ("manual_review", 1), ("promoted", 1), ("receipt", 4), ("rejected", 1), ("reserved", 2),
        ("waitlisted", 2), ("withdrawn", 1),
    ]  # fmt: skip

    def one(notice_type: str, app_id: str | None) -> dict[str, Any]:
        return next(x for x in by_type[notice_type] if x["application_id"] == app_id)

    receipt = one("receipt", a)
    assert receipt["requested_amount_cents"] == 9_600_000
    assert "96.000,00 €" in receipt["text"]
    assert berlin_time(RECEIVED_AT) in receipt["text"]
    assert receipt["subject"] == f"Eingangsbestätigung für Ihren Förderantrag {a}"
    assert "ausgesetzt" in one("receipt", b)["text"]
    assert "Sicherheitskonzept" in one("documents_requested", a)["text"]
    assert one("documents_requested", a)["documents"] == ["security_concept"]
    assert "Ihre Position auf der Warteliste: 3" in one("waitlisted", a)["text"]
    assert one("waitlisted", a)["position"] == 3
    promoted = one("promoted", a)
    assert "nachgerückt" in promoted["text"]
    assert "96.000,00 €" in promoted["text"]
    assert (promoted["fiscal_year"], promoted["amount_cents"]) == (2027, 9_600_000)
    approved = one("approved", a)
    assert "in Höhe von 96.000,00 € bewilligt" in approved["text"]
    assert "- 2027: 96.000,00 €" in approved["text"]
    assert "01.07.2027, 10:05 Uhr" in approved["text"]
    assert (approved["amount_cents"], approved["funding"]) == (
        9_600_000,
        [{"fiscal_year": 2027, "amount_cents": 9_600_000}],
    )
    assert "außerhalb von Mindest- und Höchstbetrag" in one("ineligible", b)["text"]
    assert "Thüringer Kommunen" not in one("ineligible", b)["text"], "a passed rule is no reason"
    assert [r["rule_id"] for r in one("ineligible", b)["reasons"]] == ["R05"]
    assert "persönlich geprüft" in one("manual_review", c)["subject"]
    assert "Die Haushaltsmittel des Jahres reichen nicht aus." in one("rejected", c)["text"]
    assert one("rejected", c)["reasons"] == ["insufficient_funds"]
    years = sorted((x["fiscal_year"], x["amount_cents"]) for x in by_type["reserved"])
    assert years == [(2027, 6_000_000), (2028, 3_600_000)]
    assert {"Vorgemerkt im Haushaltsjahr 2027: 60.000,00 €", "Vorgemerkt im Haushaltsjahr 2028: 36.000,00 €"} == {
        line for x in by_type["reserved"] for line in x["text"].splitlines() if line.startswith("Vorgemerkt")
    }
    assert "Rücknahme" in one("withdrawn", d)["subject"]
    rejection = one("intake_rejected", None)
    assert rejection["submission_id"] == submission
    assert "Die AGS beginnt nicht mit 16." in rejection["text"]
    assert "Betrag zu hoch." in rejection["text"]
    assert [x["code"] for x in rejection["errors"]] == ["ags_not_thuringian", "amount_too_high"]

    # E-mails: the same German text, as plain text and HTML, with the notice id as Message-ID.
    mails = [m for app in (a, b, c, d, e) for m in smtp_sink.for_application(app)]
    assert sorted(str(m["X-Notice-Id"]) for m in mails) == sorted(str(i) for i in ids(mails_expected, "email"))
    for mail in mails:
        assert str(mail["Message-ID"]).startswith(f"<{mail['X-Notice-Id']}@")
        assert mail["To"] == "erika.mustermann@musterhausen.example"
        assert text_of(mail).startswith("Sehr geehrte Damen und Herren,")
        assert '<html lang="de">' in text_of(mail, "html")
    approval_mail = next(m for m in smtp_sink.for_application(a) if m["X-Notice-Type"] == "approved")
    assert str(approval_mail["Subject"]) == f"Bewilligung Ihres Förderantrags {a}"
    assert "in Höhe von 96.000,00 € bewilligt" in text_of(approval_mail)
    assert "<li>2027: 96.000,00 €</li>" in text_of(approval_mail, "html")

    # The audit trail: one notification.delivered per notice, and the domain metric counted them.
    wanted = {str(i) for i in everything}
    events = await notification_events(kafka, wanted, lambda seen: len(seen) >= len(wanted))
    assert sorted(x.data["notice_id"] for x in events) == sorted(wanted)
    assert all(x.is_a(ev.NotificationDelivered) and x.data["attempts"] == 1 for x in events)
    rejection_event = next(x for x in events if x.data["notice_type"] == "intake_rejected")
    assert rejection_event.subject == f"{PORTAL}/{submission}"
    assert rejection_event.data["application_id"] is None
    assert counter("approved", "callback", "delivered") == before + 1


async def test_a_callback_for_an_unknown_application_waits_for_its_receipt(notify: Notify) -> None:
    """Topics are not ordered among each other: a decision can be handled before the receipt."""
    receiver = await Receiver().start()
    try:
        await notify.register(PORTAL, receiver.url)
        app_id = new_application_id()
        early = decided(app_id, ev.Decision.APPROVED, [])
        await notify.feed(early)
        await asyncio.sleep(0.5)
        assert receiver.calls == [], "delivered before anyone knew where to"
        assert (await notify.notice(notice_id(early.id, "callback")))["destination"] is None
        receipt = received(app_id)
        await notify.feed(receipt)
        await notify.wait_status(ids([early, receipt], "callback") + ids([early, receipt], "email"), "delivered")
        assert {c.data["notice_type"] for c in receiver.accepted} == {"approved", "receipt"}
    finally:
        await receiver.stop()


# --- retries ------------------------------------------------------------------------------------


async def test_a_receiver_failing_three_times_gets_the_notice_exactly_once(notify: Notify, kafka: KafkaAccess) -> None:
    receiver = await Receiver(fail_first=3).start()
    try:
        secret = await notify.register(PORTAL, receiver.url)
        receipt = received(new_application_id())
        await notify.feed(receipt)
        callback = notice_id(receipt.id, "callback")
        await notify.wait_status([callback], "delivered")
        await asyncio.sleep(0.5)  # nothing more arrives afterwards
    finally:
        await receiver.stop()
    assert [c.status for c in receiver.calls] == [503, 503, 503, 204]
    assert {c.webhook_id for c in receiver.calls} == {str(callback)}, "every attempt carries the same id"
    for call in receiver.calls:  # each attempt signed with the time it was sent
        Webhook(secret).verify(call.body, call.headers)
    assert (await notify.notice(callback))["attempts"] == 4

    events = await notification_events(kafka, {str(callback)}, lambda seen: len(seen) >= 4)
    assert [(x.type.rsplit(".", 2)[-2], x.data["attempts"]) for x in events] == [
        ("failed", 1), ("failed", 2), ("failed", 3), ("delivered", 4),
    ]  # fmt: skip
    assert all(x.data["will_retry"] and x.data["last_error"] == "callback answered HTTP 503" for x in events[:3])
    assert all(x.causationid == receipt.id and x.subject == receipt.subject for x in events)


async def test_a_later_notice_waits_until_the_earlier_one_of_its_application_is_delivered(notify: Notify) -> None:
    """The applicant's order: the receipt fails once and is retried; the approval goes only after it."""
    receiver = await Receiver(fail_first=1).start()
    try:
        await notify.register(PORTAL, receiver.url)
        app_id = new_application_id()
        receipt, approval = received(app_id), decided(app_id, ev.Decision.APPROVED, [])
        await notify.feed(receipt, approval)
        await notify.wait_status(ids([receipt, approval], "callback") + ids([receipt, approval], "email"), "delivered")
    finally:
        await receiver.stop()
    assert [(c.data["notice_type"], c.status) for c in receiver.calls] == [
        ("receipt", 503), ("receipt", 204), ("approved", 204),
    ]  # fmt: skip
    first = await notify.notice(notice_id(receipt.id, "callback"))
    second = await notify.notice(notice_id(approval.id, "callback"))
    assert first["delivered_at"] <= second["delivered_at"]


async def test_a_receiver_that_is_down_gets_the_notice_after_it_comes_back(notify: Notify) -> None:
    receiver = Receiver(port=free_port())
    await notify.register(PORTAL, receiver.url)  # registered, but nothing listens yet
    receipt = received(new_application_id())
    await notify.feed(receipt)
    callback = notice_id(receipt.id, "callback")
    await notify.wait_for("SELECT attempts >= 2 FROM notices WHERE notice_id = $1", callback)
    assert (await notify.notice(callback))["last_error"] == "callback could not connect"
    await receiver.start()
    try:
        await notify.wait_status([callback], "delivered")
    finally:
        await receiver.stop()
    assert [c.webhook_id for c in receiver.calls] == [str(callback)]


async def test_a_receiver_that_never_comes_back_ends_in_the_dead_letter_topic_and_can_be_redelivered(
    pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink
) -> None:
    async with running_notify(pg_admin_dsn, kafka, smtp_sink.port, max_attempts=3) as notify:
        receiver = Receiver(port=free_port())
        await notify.register(PORTAL, receiver.url)
        receipt = received(new_application_id())
        await notify.feed(receipt)
        callback, email = notice_id(receipt.id, "callback"), notice_id(receipt.id, "email")
        await notify.wait_status([callback], "failed")
        await notify.wait_status([email], "delivered")  # one dead receiver does not stop the other channel
        assert (await notify.notice(callback))["attempts"] == 3

        def given_up(seen: list[Envelope]) -> bool:
            return any(x.data.get("notice_id") == str(callback) and not x.data["will_retry"] for x in seen)

        parked = await read_topic(kafka, dead_letters("notify"), given_up, timeout=30)
        letter = next(x for x in parked if x.data.get("notice_id") == str(callback))
        failed = letter.payload(ev.NotificationFailed)
        assert (failed.attempts, failed.notice_type, failed.channel) == (3, "receipt", ev.NoticeChannel.CALLBACK)
        assert failed.last_error == "callback could not connect"
        assert failed.next_attempt_at is None
        events = await notification_events(kafka, {str(callback)}, lambda seen: len(seen) >= 3)
        assert [x.data["will_retry"] for x in events] == [True, True, False]

        # The operator brings the receiver back and redelivers the notice: same id, delivered once.
        await receiver.start()
        try:
            env = {**os.environ, "NOTIFY_DATABASE_URL": notify.settings.dsn}
            replay = subprocess.run(
                [sys.executable, "-m", "services.notify.redeliver", str(callback)],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert replay.returncode == 0, replay.stderr
            assert "is due again" in replay.stdout
            notify.deliverer.wake()
            await notify.wait_status([callback], "delivered")
        finally:
            await receiver.stop()
        assert [c.webhook_id for c in receiver.accepted] == [str(callback)]
        again = subprocess.run(
            [sys.executable, "-m", "services.notify.redeliver", str(callback)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert again.returncode == 1, "a delivered notice is not replayed"


async def test_a_notice_older_than_the_age_limit_is_given_up(
    pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink
) -> None:
    async with running_notify(pg_admin_dsn, kafka, smtp_sink.port, max_age_seconds=1.0, max_attempts=1000) as notify:
        await notify.register(PORTAL, f"http://127.0.0.1:{free_port()}/hooks")
        receipt = received(new_application_id())
        await notify.feed(receipt)
        callback = notice_id(receipt.id, "callback")
        await notify.wait_status([callback], "failed", timeout=10)
        assert (await notify.notice(callback))["attempts"] < notify.settings.max_attempts


# --- per destination ------------------------------------------------------------------------------


async def test_a_slow_receiver_does_not_delay_another_portals_notices(
    pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink
) -> None:
    slow, fast = await Receiver(delay=2.5).start(), await Receiver().start()
    try:
        async with running_notify(
            pg_admin_dsn, kafka, smtp_sink.port, callback_timeout_seconds=3.0, callback_concurrency=2
        ) as notify:
            await notify.register("portal-slow", slow.url)
            await notify.register("portal-fast", fast.url)
            slow_receipts = [received(new_application_id(), "portal-slow") for _ in range(6)]
            await notify.feed(*slow_receipts)
            await eventually(lambda: slow.in_flight == 2)
            started = time.monotonic()
            fast_receipts = [received(new_application_id(), "portal-fast") for _ in range(10)]
            await notify.feed(*fast_receipts)
            await notify.wait_status(ids(fast_receipts, "callback") + ids(fast_receipts, "email"), "delivered")
            elapsed = time.monotonic() - started
            # Done before the slow portal answered even its first two: nothing waited behind it.
            assert len(slow.calls) == 2, f"the fast portal waited {elapsed:.1f}s, behind the slow one"
            assert elapsed < 2.0
            assert slow.most_in_flight == 2
            await notify.wait_status(ids(slow_receipts, "callback"), "delivered", timeout=30)
    finally:
        await slow.stop()
        await fast.stop()
    assert slow.most_in_flight == 2, "never more than the per-portal limit in flight"
    assert len(slow.accepted) == 6
    assert len(fast.accepted) == 10


# --- only registered URLs ---------------------------------------------------------------------------


async def test_only_registered_https_urls_are_called(notify: Notify) -> None:
    for refused in (
        "http://portal.example/hooks",  # plain HTTP to anywhere but loopback
        "ftp://127.0.0.1/hooks",
        "https://user:pw@portal.example/hooks",
        "https:///hooks",
    ):
        with pytest.raises(ValueError, match="callback URL"):
            await notify.register("portal-b", refused)
    async with notify.pool.acquire() as conn:
        with pytest.raises(ValueError, match="loopback"):  # without the development switch
            await register(conn, "portal-b", "http://127.0.0.1:9/hooks", allow_loopback=False)
    assert await notify.pool.fetchval("SELECT count(*) FROM callback_endpoints") == 0
    assert (await notify.register("portal-b", "https://portal.example/hooks")).startswith("whsec_")

    # A revoked endpoint is not called: attempts fail until the portal registers again.
    receiver = await Receiver().start()
    try:
        await notify.register(PORTAL, receiver.url)
        receipt = received(new_application_id())
        async with notify.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", AdvisoryLock.NOTIFY_CLAIM)  # hold delivery back meanwhile
            await notify.feed(receipt)  # the callback is owed: the endpoint is active
            assert await revoke_endpoint(conn, PORTAL)
            await conn.execute("SELECT pg_advisory_unlock($1)", AdvisoryLock.NOTIFY_CLAIM)
        callback = notice_id(receipt.id, "callback")
        await notify.wait_for("SELECT attempts >= 2 FROM notices WHERE notice_id = $1", callback)
        assert (await notify.notice(callback))["last_error"] == "no active callback endpoint for the portal"
        assert receiver.calls == []
        secret = await notify.register(PORTAL, receiver.url)
        await notify.wait_status([callback], "delivered")
        Webhook(secret).verify(receiver.calls[0].body, receiver.calls[0].headers)  # signed with the new secret
    finally:
        await receiver.stop()
    # Once revoked, later events owe the portal no callback at all.
    async with notify.pool.acquire() as conn:
        assert await revoke_endpoint(conn, PORTAL)
    later = received(new_application_id())
    await notify.feed(later)
    assert await notify.pool.fetchval("SELECT count(*) FROM notices WHERE cause_event_id = $1", later.id) == 1


async def test_a_portal_without_an_endpoint_gets_no_callback(notify: Notify) -> None:
    receipt = received(new_application_id(), "portal-mail-only")
    await notify.feed(receipt)
    await notify.wait_status([notice_id(receipt.id, "email")], "delivered")
    assert await notify.pool.fetchval("SELECT count(*) FROM notices WHERE channel = 'callback'") == 0


# --- texts that fit the state ----------------------------------------------------------------------


async def test_a_withdrawal_mail_says_money_is_released_only_when_some_is_reserved(
    notify: Notify, smtp_sink: SmtpSink
) -> None:
    waiting, holding, let_go = (new_application_id() for _ in range(3))
    stream = [
        *(received(waiting), waitlisted(waiting, 2), withdrawn(waiting)),
        *(received(holding), reserved(holding, 2027, 6_000_000), reserved(holding, 2028, 3_600_000)),
        withdrawn(holding),
        *(received(let_go), reserved(let_go, 2027, 6_000_000), released(let_go, 2027, 6_000_000, "expired")),
        withdrawn(let_go),
    ]
    await notify.feed(*stream)
    withdrawals = [e for e in stream if e.type == ev.ApplicationWithdrawn.wire_type()]
    await notify.wait_status(ids(withdrawals, "email"), "delivered")

    def withdrawal_text(app_id: str) -> str:
        [mail] = [m for m in smtp_sink.for_application(app_id) if m["X-Notice-Type"] == "withdrawn"]
        return text_of(mail)

    released_money = "vorgemerkten Haushaltsmittel werden freigegeben"
    assert released_money not in withdrawal_text(waiting), "nothing was reserved for a waitlisted application"
    assert released_money in withdrawal_text(holding)
    assert released_money not in withdrawal_text(let_go), "its reservation was released before"


# --- the mail itself ------------------------------------------------------------------------------


async def test_every_mail_carries_the_time_it_was_sent_as_its_date(notify: Notify, smtp_sink: SmtpSink) -> None:
    """RFC 5322 requires a Date header; relays and mail clients sort and judge mail by it."""
    app_id = new_application_id()
    before = datetime.now(UTC).replace(microsecond=0)
    receipt = received(app_id)
    await notify.feed(receipt)
    await notify.wait_status([notice_id(receipt.id, "email")], "delivered")
    after = datetime.now(UTC)
    [mail] = smtp_sink.for_application(app_id)
    assert mail["Date"] is not None, "no Date header"
    sent = parsedate_to_datetime(str(mail["Date"]))
    assert sent.tzinfo is not None
    assert before <= sent <= after, "the send time, not the event's"


# --- redelivery -------------------------------------------------------------------------------------


async def test_a_redelivered_event_creates_no_second_notice(notify: Notify, smtp_sink: SmtpSink) -> None:
    receipt = received(new_application_id())
    await notify.feed(receipt)
    await notify.wait_status([notice_id(receipt.id, "email")], "delivered")
    await notify.feed(receipt)  # the broker hands it over again
    # Past the inbox, the notice's stable id still refuses a second row.
    await handle_once(notify.pool, "notify-other-consumer", routes()[receipt.type], receipt)
    await asyncio.sleep(0.5)
    assert await notify.pool.fetchval("SELECT count(*) FROM notices") == 1
    assert len(smtp_sink.for_application(receipt.subject)) == 1


# --- stopping -----------------------------------------------------------------------------------


async def test_a_graceful_stop_finishes_running_attempts_and_hands_back_the_waiting_ones(
    pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink
) -> None:
    receiver = await Receiver(delay=1.0).start()
    try:
        async with running_notify(pg_admin_dsn, kafka, smtp_sink.port, callback_concurrency=1, claim_ahead=2) as notify:
            await notify.register(PORTAL, receiver.url)
            receipts = [received(new_application_id()) for _ in range(2)]
            await notify.feed(*receipts)
            await eventually(lambda: receiver.in_flight == 1)
            await notify.deliverer.stop()  # one attempt runs, one waits for the portal's only slot
            rows = await notify.pool.fetch(
                "SELECT status, attempts, leased_until, next_attempt_at <= now() AS due FROM notices"
                " WHERE notice_id = ANY($1) ORDER BY status",
                ids(receipts, "callback"),
            )
    finally:
        await receiver.stop()
    assert [(r["status"], r["attempts"]) for r in rows] == [("delivered", 1), ("pending", 0)]
    assert rows[1]["leased_until"] is None
    assert rows[1]["due"], "handed back: due at once for the next instance"
    assert len(receiver.calls) == 1
