"""One application end to end through the real services, broker and database."""

from __future__ import annotations

import asyncio
from email.message import Message

import asyncpg
import httpx
import pytest

from runtime.kafka import KafkaAccess
from runtime.signing import SignatureStatus, check_signature, load_public_keys, public_key_path
from schemas.envelope import Envelope
from schemas.events import ApplicationDecided, ApplicationReviewed, Decision, NotificationDelivered
from schemas.topics import DECISIONS, NOTIFICATIONS, REVIEWS
from tests.support import (
    SIGNING_KEY_FILE,
    SmtpSink,
    intake_url,
    open_fiscal_year,
    read_topic,
    sample_application,
    upload_attachments,
)

pytestmark = pytest.mark.e2e


def body_text(message: Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "utf-8")


async def wait_for_mails(sink: SmtpSink, application_id: str, count: int, timeout: float = 90) -> list[Message]:
    for _ in range(int(timeout * 10)):
        if len(sink.for_application(application_id)) >= count:
            break
        await asyncio.sleep(0.1)
    return sink.for_application(application_id)


async def test_submitted_application_is_reserved_decided_and_notified(
    services: object, portal_token: str, kafka: KafkaAccess, service_dsns: dict[str, str], smtp_sink: SmtpSink
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    auth = {"Authorization": f"Bearer {portal_token}"}
    async with httpx.AsyncClient(timeout=10) as http:
        application = sample_application()
        receipt = await http.post(intake_url("/v1/applications"), json=application, headers=auth)
    assert receipt.status_code == 202, receipt.text
    app_id = receipt.json()["application_id"]
    await upload_attachments(app_id, application, portal_token)

    decisions = await read_topic(kafka, DECISIONS, lambda seen: any(e.subject == app_id for e in seen))
    decided = [e for e in decisions if e.subject == app_id]
    assert len(decided) == 1
    decision = decided[0].payload(ApplicationDecided)
    assert decision.decision is Decision.APPROVED
    assert decision.amount_cents == 9_600_000
    assert [(f.fiscal_year, f.amount_cents) for f in decision.funding] == [(2027, 9_600_000)]
    assert decision.rules_version == "egov-2024-v1"
    assert decision.received_at.isoformat() == receipt.json()["received_at"]
    published_key = load_public_keys([public_key_path(SIGNING_KEY_FILE)])
    assert check_signature(decided[0], published_key) is SignatureStatus.VALID, "decisions are signed"
    tampered = decided[0].model_copy(update={"data": {**decided[0].data, "amount_cents": 1}})
    assert check_signature(tampered, published_key) is SignatureStatus.INVALID

    reviews = await read_topic(kafka, REVIEWS, lambda seen: any(e.subject == app_id for e in seen))
    review = next(e for e in reviews if e.subject == app_id)
    assert review.payload(ApplicationReviewed).outcome.value == "eligible"
    assert decided[0].causationid == review.id, "the decision names the review that caused it"
    assert decided[0].correlationid == app_id

    conn = await asyncpg.connect(service_dsns["budget"])
    try:
        rows = await conn.fetch(
            "SELECT fiscal_year, amount_cents, status FROM reservations WHERE application_id = $1", app_id
        )
        ledger = await conn.fetch(
            "SELECT movement, amount_cents FROM ledger WHERE application_id = $1 ORDER BY id", app_id
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [(2027, 9_600_000, "committed")]
    assert [tuple(r) for r in ledger] == [("reserved", 9_600_000), ("committed", 9_600_000)]

    mails = await wait_for_mails(smtp_sink, app_id, 2)
    subjects = sorted(str(m["Subject"]) for m in mails)
    assert any(s.startswith("Eingangsbestätigung") for s in subjects), subjects
    approval = next(m for m in mails if str(m["Subject"]).startswith("Bewilligung"))
    assert "96.000,00 €" in body_text(approval)
    assert "erika.mustermann" not in str(approval["Subject"])

    def delivered(seen: list[Envelope]) -> list[Envelope]:
        return [e for e in seen if e.subject == app_id and e.is_a(NotificationDelivered)]

    notifications = await read_topic(kafka, NOTIFICATIONS, lambda seen: len(delivered(seen)) >= 2)
    types = sorted(e.payload(NotificationDelivered).notice_type for e in delivered(notifications))
    assert types == ["approved", "receipt"]

    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(50):
            status = (await http.get(intake_url(f"/v1/applications/{app_id}"), headers=auth)).json()
            if status["status"] == "approved":
                break
            await asyncio.sleep(0.1)
    assert status["status"] == "approved"
    steps = [t["type"] for t in status["timeline"] if not t["type"].startswith("notification.")]
    assert steps[:3] == [
        "application.received.v1",
        "application.completed.v1",  # its attachments arrived: complete, then reviewed
        "application.reviewed.v1",
    ]
