"""Notify calls only public HTTPS destinations: at registration and again at every delivery.

Real PostgreSQL and broker; names are answered by an injected resolver, so "a name that now
points at the metadata service" needs no DNS server.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.kafka import KafkaAccess
from schemas import events as ev
from schemas.envelope import Envelope
from schemas.topics import dead_letters
from services.notify.destinations import DestinationRefused
from services.notify.domain import notice_id
from tests.integration.test_notify_delivery import PORTAL, new_application_id, received, running_notify
from tests.support import REPO, TEST_SLOT, SmtpSink, fresh_database, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka(scratch_kafka: KafkaAccess) -> KafkaAccess:
    """In-process notify handles hand-made events here: on the session's scratch broker, not the shared log."""
    return scratch_kafka


REFUSED = [
    "http://portal.example/hooks",
    "https://127.0.0.1/hooks",
    "http://127.0.0.1:9/hooks",
    "https://[::1]/hooks",
    "https://[::ffff:127.0.0.1]/hooks",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/hooks",
    "https://100.64.1.1/hooks",
    "https://0.0.0.0/hooks",
    "https://localhost/hooks",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://private.example/hooks",  # a public-looking name for a private address
]


class Dns:
    """What each name resolves to right now; a test re-points a name like a rebinding attacker."""

    def __init__(self) -> None:
        self.answers = {"portal.example": ["93.184.215.14"], "private.example": ["10.1.2.3"]}

    async def __call__(self, host: str, port: int) -> list[str]:
        if host not in self.answers:
            raise OSError(f"{host} unknown")
        return self.answers[host]


async def test_registration_refuses_every_destination_inside(
    pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink
) -> None:
    async with running_notify(
        pg_admin_dsn, kafka, smtp_sink.port, resolve=Dns(), allow_loopback_callbacks=False
    ) as notify:
        for url in REFUSED:
            with pytest.raises(DestinationRefused, match=r"callback (URL|host)") as refused:
                await notify.register("portal-x", url)
            assert str(refused.value), url
        assert await notify.pool.fetchval("SELECT count(*) FROM callback_endpoints") == 0
        assert (await notify.register("portal-x", "https://portal.example/hooks")).startswith("whsec_")


async def test_the_registration_cli_answers_a_clear_refusal(pg_admin_dsn: str) -> None:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_notify_cli")
    env = {"NOTIFY_DATABASE_URL": dsn, "NOTIFY_ENVIRONMENT": "test", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "services.notify.endpoints", "register", "portal-x", "https://169.254.169.254/"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "refused: the callback URL points to a link-local address" in done.stderr
    assert done.stdout == "", "no secret for a refused URL"


async def test_a_name_rebound_inside_after_registration_fails_permanently_and_is_parked(
    pg_admin_dsn: str, kafka: KafkaAccess, smtp_sink: SmtpSink
) -> None:
    dns = Dns()
    async with running_notify(
        pg_admin_dsn, kafka, smtp_sink.port, resolve=dns, allow_loopback_callbacks=False
    ) as notify:
        await notify.register(PORTAL, "https://portal.example/hooks")  # public when registered
        dns.answers["portal.example"] = ["169.254.169.254"]  # ...and the metadata service at delivery
        receipt = received(new_application_id())
        await notify.feed(receipt)
        callback = ev.NoticeChannel.CALLBACK.value
        notice = notice_id(receipt.id, callback)
        await notify.wait_status([notice], "failed")
        row = await notify.notice(notice)
        assert row["attempts"] == 1, "a refused destination is not retried"
        assert "refused" in row["last_error"]
        assert "link-local" in row["last_error"]

        def given_up(seen: list[Envelope]) -> bool:
            return any(x.data.get("notice_id") == str(notice) for x in seen)

        parked = await read_topic(kafka, dead_letters("notify"), given_up, timeout=30)
        failed = next(x for x in parked if x.data.get("notice_id") == str(notice)).payload(ev.NotificationFailed)
        assert not failed.will_retry
        assert "link-local" in failed.last_error
