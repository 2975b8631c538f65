"""Notify's handlers: each event that concerns a municipality becomes a stored notice per channel."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from runtime.consumer import Handler
from runtime.outbox import Outgoing
from schemas.envelope import Envelope, Event
from schemas.events import ApplicationReceived, NoticeChannel
from services.notify import store
from services.notify.domain import NOTICE_RULES, notice_for, notice_id


def notice_handler(event_class: type[Event]) -> Handler:
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        if event_class is ApplicationReceived:
            received = envelope.payload(ApplicationReceived)
            await store.remember_recipient(
                conn, received.application_id, received.portal_id, received.application.contact.email
            )
        notice = notice_for(envelope, event_class)
        if notice is not None:
            channel = NoticeChannel.EMAIL
            await store.add_notice(conn, notice_id(envelope.id, channel.value), channel.value, notice, envelope.id)
        return ()  # notification.* events are emitted when delivery succeeds or finally fails

    return handle


ROUTES: dict[str, Handler] = {cls.wire_type(): notice_handler(cls) for cls in NOTICE_RULES}
