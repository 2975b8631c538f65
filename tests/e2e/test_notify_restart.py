"""Notify as a real process, killed (SIGKILL) mid-delivery and started again: nothing is lost, and
nothing is sent a second time under a new identity (same webhook-id, same Message-ID).

The instance runs in its own consumer group (``NOTIFY_CONSUMER_NAME``) moved to the end of the
topics first, so it sees only this test's events and never competes with the suite's notify.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import TopicPartition
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from standardwebhooks.webhooks import Webhook

from runtime.kafka import KafkaAccess, make_consumer, make_producer, publish
from schemas.events import NotificationDelivered
from schemas.topics import APPLICATIONS, BUDGET, DECISIONS, NOTIFICATIONS, REVIEWS, Topic
from services.notify.domain import notice_id
from tests.integration.test_notify_delivery import Receiver, new_application_id, received
from tests.support import REPO, TEST_SLOT, SmtpSink, fresh_database, read_topic, service_kafka_env

pytestmark = pytest.mark.e2e

HTTP_PORT = 18050 + 100 * TEST_SLOT
PORTAL = "portal-k"
APPLICATIONS_COUNT = 6


@dataclass
class SlowSink(SmtpSink):
    """Keeps every mail at once, then takes its time to say 250: a kill lands mid-delivery."""

    delay: float = 1.5

    async def handle_DATA(self, server: SMTP, session: Any, envelope: SmtpEnvelope) -> str:
        await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay)
        return "250 OK"

    async def start(self) -> None:
        await super().start()
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]


async def move_group_to_end(kafka: KafkaAccess, group: str, topics: list[Topic]) -> None:
    consumer = make_consumer(kafka, group, [], "test-group-mover")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # as tests.support.read_topic does: learn the partitions
        partitions = [TopicPartition(t.name, p) for t in topics for p in consumer.partitions_for_topic(t.name) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()


@dataclass
class NotifyProcess:
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.notify"], cwd=REPO, env=self.env, stdout=out, stderr=out
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                assert self.process.poll() is None, f"notify exited; see {self.log}"
                try:
                    if (await http.get(f"http://127.0.0.1:{HTTP_PORT}/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"notify not ready; see {self.log}")

    def stop(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process = None
        return code


@pytest.fixture
async def notify_env(pg_admin_dsn: str, kafka: KafkaAccess) -> dict[str, str]:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_notify_e2e")
    group = f"e2e-{uuid.uuid4().hex[:8]}"
    await move_group_to_end(kafka, f"notify-{group}", [APPLICATIONS, REVIEWS, BUDGET, DECISIONS])
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
    env.update(
        {
            **service_kafka_env(kafka, "notify"),
            "NOTIFY_DATABASE_URL": dsn,
            "NOTIFY_HTTP_PORT": str(HTTP_PORT),
            "NOTIFY_ENVIRONMENT": "test",
            "NOTIFY_CONSUMER_NAME": group,
            "NOTIFY_LEASE_SECONDS": "6",
            "NOTIFY_CLAIM_AHEAD": "2",
            "NOTIFY_CALLBACK_TIMEOUT_SECONDS": "2.5",
            "NOTIFY_SMTP_TIMEOUT_SECONDS": "2.5",
            "NOTIFY_FIRST_RETRY_SECONDS": "0.2",
            "NOTIFY_ALLOW_LOOPBACK_CALLBACKS": "true",
        }
    )
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False
    )


async def test_endpoint_cli_registers_prints_the_secret_once_and_refuses_plain_http(notify_env: dict[str, str]) -> None:
    refused = cli(notify_env, "services.notify.endpoints", "register", "portal-x", "http://portal.example/hooks")
    assert refused.returncode == 2
    assert "https" in refused.stderr
    done = cli(notify_env, "services.notify.endpoints", "register", "portal-x", "https://localhost/hooks")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("whsec_")
    listed = cli(notify_env, "services.notify.endpoints", "list")
    assert "portal-x\thttps://localhost/hooks\tactive" in listed.stdout
    assert "whsec_" not in listed.stdout, "the secret is shown once, at registration"
    assert cli(notify_env, "services.notify.endpoints", "revoke", "portal-x").returncode == 0
    assert "revoked" in cli(notify_env, "services.notify.endpoints", "list").stdout


async def test_killed_mid_delivery_and_restarted_sends_no_notice_under_a_new_id(
    notify_env: dict[str, str], kafka: KafkaAccess, log_dir: Path
) -> None:
    receiver = Receiver(delay=1.5, port=0)
    await receiver.start()
    sink = SlowSink(0)
    await sink.start()
    env = {**notify_env, "NOTIFY_SMTP_PORT": str(sink.port)}
    registered = cli(env, "services.notify.endpoints", "register", PORTAL, receiver.url)
    assert registered.returncode == 0, registered.stderr
    secret = registered.stdout.strip()
    notify = NotifyProcess(env, log_dir / "notify-e2e.log")
    try:
        notify.start()
        await notify.wait_ready()
        receipts = [received(new_application_id(), PORTAL) for _ in range(APPLICATIONS_COUNT)]
        producer = make_producer(kafka, "notify-e2e-test")
        await producer.start()
        try:
            for receipt in receipts:
                await publish(producer, APPLICATIONS, receipt.subject, receipt)
        finally:
            await producer.stop()

        deadline = time.monotonic() + 30
        while not (receiver.in_flight and sink.messages):
            assert time.monotonic() < deadline, "no delivery started"
            await asyncio.sleep(0.02)
        assert notify.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-delivery: answers not yet received

        notify.start()
        await notify.wait_ready()
        callbacks = {str(notice_id(r.id, "callback")) for r in receipts}
        emails = {str(notice_id(r.id, "email")) for r in receipts}
        conn = await asyncpg.connect(env["NOTIFY_DATABASE_URL"])
        try:
            deadline = time.monotonic() + 60
            query = "SELECT count(*) FROM notices WHERE status = 'delivered' AND notice_id::text = ANY($1)"
            while await conn.fetchval(query, [*callbacks, *emails]) < 2 * APPLICATIONS_COUNT:
                assert time.monotonic() < deadline, "not every notice was delivered after the restart"
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        assert notify.stop(signal.SIGTERM) == 0
    finally:
        if notify.process is not None:
            notify.stop(signal.SIGKILL)
        await receiver.stop()
        await sink.stop()

    # Callbacks: some arrived twice (the crash interrupted them), always under the same id and body.
    # Only receipts count: when the suite's services run too, they review these applications and
    # later notices (ineligibility, ...) for the same portal arrive as well, under ids of their own.
    receipt_calls = [c for c in receiver.calls if json.loads(c.body)["type"] == "notice.receipt"]
    by_id = Counter(c.webhook_id for c in receipt_calls)
    assert set(by_id) == callbacks, "a callback under an unknown id, or one missing"
    assert max(by_id.values()) >= 2, "the kill did not land mid-delivery: the test proved nothing"
    for call in receiver.calls:
        assert Webhook(secret).verify(call.body, call.headers)["data"]["notice_id"] == call.webhook_id
    assert all(len({c.body for c in receiver.calls if c.webhook_id == i}) == 1 for i in by_id)

    # Mails: resent copies carry the same Message-ID.
    message_ids: dict[str, set[str]] = {}
    for mail in sink.messages:
        if not str(mail["Subject"]).startswith("Eingangsbestätigung"):
            continue
        message_ids.setdefault(str(mail["X-Notice-Id"]), set()).add(str(mail["Message-ID"]))
    assert set(message_ids) == emails
    assert all(len(ids) == 1 for ids in message_ids.values())

    # The audit trail records each notice delivered exactly once.
    wanted = callbacks | emails

    def ours(seen: list[Any]) -> list[Any]:
        return [e for e in seen if e.is_a(NotificationDelivered) and e.data["notice_id"] in wanted]

    events = ours(await read_topic(kafka, NOTIFICATIONS, lambda seen: len(ours(seen)) >= len(wanted)))
    delivered = Counter(e.data["notice_id"] for e in events)
    assert set(delivered) == wanted
    # Callbacks exactly once. E-mails may be recorded twice when the suite's own notify runs beside
    # this one: both read the same receipts and both may mail them, under the same stable id.
    assert all(delivered[i] == 1 for i in callbacks)
