"""Notify's handlers: each event that concerns a municipality becomes a stored notice per channel.

An e-mail goes to the application's contact; a callback goes to the portal if it has registered
an endpoint. A submission rejected at intake never became an application: its portal hears by
callback only. ``notification.*`` events are emitted by delivery, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.events import (
    ApplicationReceived,
    ApplicationWaitlisted,
    ApplicationWithdrawn,
    FundsCommitted,
    FundsEarmarked,
    FundsReleased,
    FundsReserved,
    NoticeChannel,
)
from services.notify import store
from services.notify.domain import NOTICE_RULES, Notice, NoticeContext, callback_body, notice_id, notice_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from runtime.consumer import Handler
    from runtime.outbox import Outgoing
    from schemas.envelope import Envelope, Event

EMAIL, CALLBACK = NoticeChannel.EMAIL.value, NoticeChannel.CALLBACK.value


async def remember(conn: asyncpg.Connection, payload: Event) -> None:
    if isinstance(payload, ApplicationReceived):
        contact = payload.application.contact.email
        await store.remember_recipient(conn, payload.application_id, payload.portal_id, contact)
    elif isinstance(payload, ApplicationWaitlisted):
        await store.remember_waitlisted(conn, payload.application_id, payload.amount_cents)
    elif isinstance(payload, FundsReserved | FundsEarmarked):
        await store.hold_reservation(conn, payload.application_id, payload.fiscal_year)
    elif isinstance(payload, FundsReleased | FundsCommitted):
        await store.end_reservation(conn, payload.application_id, payload.fiscal_year)


async def context_of(conn: asyncpg.Connection, payload: Event) -> NoticeContext:
    if isinstance(payload, FundsReserved):
        return NoticeContext(promoted_amount_cents=await store.end_waitlist_stay(conn, payload.application_id))
    if isinstance(payload, ApplicationWithdrawn):
        return NoticeContext(holds_reservation=await store.holds_reservation(conn, payload.application_id))
    return NoticeContext()


async def store_notice(conn: asyncpg.Connection, notice: Notice, cause: Envelope) -> None:
    key = notice.application_id or cause.subject
    recipient_portal = await store.portal_of(conn, notice.application_id) if notice.application_id else None
    if notice.application_id is not None:
        await store_email(conn, notice, cause, key, recipient_known=recipient_portal is not None)
    portal = notice.portal_id or recipient_portal
    if portal is None or await store.has_endpoint(conn, portal):
        await store_callback(conn, notice, cause, key, portal)


async def store_email(
    conn: asyncpg.Connection, notice: Notice, cause: Envelope, key: str, *, recipient_known: bool
) -> None:
    # Without a destination until the receipt (with the address) is seen: remember_recipient settles it.
    destination = store.EMAIL if recipient_known else None
    stored = store.StoredNotice(notice_id(cause.id, EMAIL), EMAIL, destination, key, cause.id, cause.time)
    await store.add_notice(conn, notice, stored)


async def store_callback(
    conn: asyncpg.Connection, notice: Notice, cause: Envelope, key: str, portal: str | None
) -> None:
    """``portal`` None: the receipt is not seen yet, remember_recipient settles whether it is owed."""
    callback_id = notice_id(cause.id, CALLBACK)
    destination = store.callback_destination(portal) if portal else None
    body = callback_body(notice, callback_id, cause)
    await store.add_notice(
        conn, notice, store.StoredNotice(callback_id, CALLBACK, destination, key, cause.id, cause.time, portal, body)
    )


def notice_handler(event_class: type[Event]) -> Handler:
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        payload = envelope.payload(event_class)
        await remember(conn, payload)
        notice = notice_of(payload, await context_of(conn, payload)) if event_class in NOTICE_RULES else None
        if notice is not None:
            await store_notice(conn, notice, envelope)
        return ()

    return handle


# Events that owe no notice of their own but change what a later notice says.
REMEMBERED: tuple[type[Event], ...] = (FundsEarmarked, FundsReleased, FundsCommitted)


def routes() -> dict[str, Handler]:
    return {cls.wire_type(): notice_handler(cls) for cls in (*NOTICE_RULES, *REMEMBERED)}
