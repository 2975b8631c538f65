"""Our callback signatures, checked by an independent implementation (the ``standardwebhooks``
package): it accepts what notify really sent, and rejects every tampered variant."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from runtime.kafka import KafkaAccess
from services.notify import webhooks
from services.notify.domain import notice_id
from tests.integration.test_notify_delivery import (
    PORTAL,
    Call,
    Notify,
    Receiver,
    new_application_id,
    received,
    running_notify,
)
from tests.support import SmtpSink

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka(scratch_kafka: KafkaAccess) -> KafkaAccess:
    """In-process notify handles hand-made events here: on the session's scratch broker, not the shared log."""
    return scratch_kafka


@pytest.fixture
async def notify(pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink) -> AsyncIterator[Notify]:
    async with running_notify(pg_admin_dsn, kafka, smtp_sink.port) as running:
        yield running


@pytest.fixture
async def delivered(notify: Notify) -> AsyncIterator[tuple[str, Call]]:
    """A receipt callback as it arrived at the portal, with the portal's secret."""
    receiver = await Receiver().start()
    try:
        secret = await notify.register(PORTAL, receiver.url)
        receipt = received(new_application_id())
        await notify.feed(receipt)
        await notify.wait_status([notice_id(receipt.id, "callback")], "delivered")
        yield secret, receiver.accepted[0]
    finally:
        await receiver.stop()


def test_the_secret_has_the_standard_format() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert webhooks.new_secret() != secret


async def test_the_independent_implementation_accepts_our_callback(delivered: tuple[str, Call]) -> None:
    secret, call = delivered
    payload = Webhook(secret).verify(call.body, call.headers)
    assert payload["type"] == "notice.receipt"
    assert payload["data"]["notice_id"] == call.headers["webhook-id"]
    assert abs(int(call.headers["webhook-timestamp"]) - time.time()) < 60
    assert call.headers["content-type"] == "application/json"
    # and it computes the very same signature from the same inputs
    sent_at = datetime.fromtimestamp(int(call.headers["webhook-timestamp"]), UTC)
    assert Webhook(secret).sign(call.webhook_id, sent_at, call.body.decode()) == call.headers["webhook-signature"]


def tampered_variants(call: Call) -> dict[str, tuple[bytes, dict[str, str]]]:
    body = json.loads(call.body)
    body["data"]["amount_cents"] = 1
    h = call.headers
    stale = str(int(h["webhook-timestamp"]) - 600)
    return {
        "body": (json.dumps(body).encode(), h),
        "one byte of the body": (call.body.replace(b"Sehr", b"sehr", 1), h),
        "id": (call.body, {**h, "webhook-id": "00000000-0000-5000-8000-000000000000"}),
        "timestamp": (call.body, {**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}),
        "signature": (call.body, {**h, "webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode()}),
        "version": (call.body, {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}),
        "replayed late": (call.body, {**h, "webhook-timestamp": stale}),
        "missing signature": (call.body, {k: v for k, v in h.items() if k != "webhook-signature"}),
    }


@pytest.mark.parametrize(
    "variant",
    ["body", "one byte of the body", "id", "timestamp", "signature", "version", "replayed late", "missing signature"],
)
async def test_the_independent_implementation_rejects_tampered_callbacks(
    delivered: tuple[str, Call], variant: str
) -> None:
    secret, call = delivered
    body, headers = tampered_variants(call)[variant]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


async def test_another_portals_secret_does_not_verify(delivered: tuple[str, Call]) -> None:
    _, call = delivered
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(call.body, call.headers)


async def test_a_stale_callback_re_signed_with_our_key_is_accepted_only_when_fresh(delivered: tuple[str, Call]) -> None:
    """A receiver's replay protection rests on the timestamp; only the key holder can refresh it."""
    secret, call = delivered
    now = int(time.time())
    fresh = webhooks.headers(secret, call.webhook_id, now, call.body)
    assert Webhook(secret).verify(call.body, fresh)["data"]["notice_id"] == call.webhook_id
    old = webhooks.headers(secret, call.webhook_id, now - 3600, call.body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(call.body, old)
