"""Delivering notices: claim what is due, send it, record the outcome with its event.

Each attempt's outcome and the ``notification.*`` event go into one transaction
(through the outbox). The e-mail carries the notice id as its Message-ID, so a
receiver can drop a second copy sent after a crash between send and record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import timedelta
from email.message import EmailMessage

import aiosmtplib
import asyncpg

from runtime.outbox import OutboxRelay, Outgoing, stage
from schemas.envelope import Envelope, utc_now
from schemas.events import NoticeChannel, NotificationDelivered, NotificationFailed
from schemas.topics import NOTIFICATIONS
from services.notify import store
from services.notify.domain import retry_delay
from services.notify.settings import NotifySettings

log = logging.getLogger(__name__)
SOURCE = "/egov/notify"
LEASE = timedelta(seconds=60)


def email_message(row: asyncpg.Record, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row["email"]
    message["Subject"] = row["subject"]
    message["Message-ID"] = f"<{row['notice_id']}@egov.thueringen.example>"
    message["X-Notice-Id"] = str(row["notice_id"])
    message["X-Application-Id"] = row["application_id"]
    message.set_content(row["body_text"])
    message.add_alternative(row["body_html"], subtype="html")
    return message


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, relay: OutboxRelay, settings: NotifySettings) -> None:
        self._pool, self._relay, self._settings = pool, relay, settings
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deliverer")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            try:
                due = await store.claim_due(self._pool, 50, LEASE)
                if due:
                    await asyncio.gather(*(self._deliver(row) for row in due))
                    self._relay.wake()
                    continue
            except Exception:
                log.warning("delivery round failed, will retry", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.sleep(0.2)

    async def _send_email(self, row: asyncpg.Record) -> None:
        s = self._settings
        await aiosmtplib.send(
            email_message(row, s.mail_from),
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_timeout_seconds,
        )

    async def _deliver(self, row: asyncpg.Record) -> None:
        try:
            await self._send_email(row)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            await self._record_failure(row, f"{type(err).__name__}: {err}")
            return
        async with self._pool.acquire() as conn, conn.transaction():
            attempts = await store.mark_delivered(conn, row["notice_id"])
            if attempts is not None:
                event = NotificationDelivered(
                    notice_id=str(row["notice_id"]),
                    application_id=row["application_id"],
                    notice_type=row["notice_type"],
                    channel=NoticeChannel(row["channel"]),
                    attempts=attempts,
                    delivered_at=utc_now(),
                )
                await stage(conn, [self._outgoing(event, row)])
        log.info("notice delivered", extra={"notice_type": row["notice_type"], "channel": row["channel"]})

    async def _record_failure(self, row: asyncpg.Record, error: str) -> None:
        s = self._settings
        attempts = row["attempts"] + 1
        retry = (
            None
            if attempts >= s.max_attempts
            else timedelta(seconds=retry_delay(attempts, s.first_retry_seconds, s.max_retry_seconds, random.random()))
        )
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await store.mark_attempt_failed(conn, row["notice_id"], error, retry)
            if recorded is not None and retry is None:
                event = NotificationFailed(
                    notice_id=str(row["notice_id"]),
                    application_id=row["application_id"],
                    notice_type=row["notice_type"],
                    channel=NoticeChannel(row["channel"]),
                    attempts=recorded,
                    last_error=error[:500],
                )
                await stage(conn, [self._outgoing(event, row)])
        log.warning(
            "notice delivery failed",
            extra={"notice_type": row["notice_type"], "attempts": attempts, "gave_up": retry is None},
        )

    @staticmethod
    def _outgoing(event: NotificationDelivered | NotificationFailed, row: asyncpg.Record) -> Outgoing:
        envelope = Envelope.wrap(event, source=SOURCE, subject=row["application_id"], actor="notify")
        return Outgoing(NOTIFICATIONS, row["application_id"], envelope)
