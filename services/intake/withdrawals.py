"""A portal withdraws its application: allowed from received until decided, published with acks=all.

A withdrawal is first marked in the status row, so two concurrent requests publish one event; its
event id is derived from the application id, so a retry after a lost acknowledgement (answered 503
``broker.outcome_unknown``: it may have landed) publishes the same event, which every consumer
de-duplicates; once the status view has seen it, a retry is answered 409 ``application.withdrawn``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from runtime.problems import Problem
from schemas.envelope import Envelope
from schemas.events import ApplicationWithdrawn
from schemas.topics import APPLICATIONS
from services.intake import store
from services.intake.policy import FINAL_RANK, PortalAccess, withdrawal_refusal
from services.intake.publisher import BoundedPublisher, Unacknowledged
from services.intake.submission import SOURCE, outcome_unknown

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, timedelta

    import asyncpg

WITHDRAWAL_IDS = uuid.UUID("5b0b6a5e-7c56-4d1e-9a43-2f5c3c8f1d20")


def not_found() -> Problem:
    return Problem(404, "application.not_found", "No such application for this portal")


class Withdrawals:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: BoundedPublisher,
        in_flight: timedelta,
        *,
        appended: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool, self.publisher, self.in_flight = pool, publisher, in_flight
        # Told after every acknowledged publish: watermarks are due (watermarks.py).
        self.appended = appended

    async def withdraw(self, portal: PortalAccess, application_id: str, reason: str | None) -> dict[str, Any]:
        claimed = await store.claim_withdrawal(self.pool, application_id, portal.portal_id, FINAL_RANK, self.in_flight)
        if claimed is None:
            raise await self.refusal(portal, application_id)
        withdrawn_at: datetime = claimed["withdrawal_first_requested_at"]
        event = ApplicationWithdrawn(application_id=application_id, portal_id=portal.portal_id, reason=reason)
        envelope = Envelope.wrap(
            event,
            source=SOURCE,
            subject=application_id,
            actor=f"portal:{portal.portal_id}",
            event_id=str(uuid.uuid5(WITHDRAWAL_IDS, application_id)),
            time=withdrawn_at,
        )
        try:
            await self.publisher.publish(APPLICATIONS, application_id, envelope)
        except Unacknowledged as err:
            # Released, so a retry may publish again: the same event id, which every consumer
            # de-duplicates; if the first one landed, the status view soon answers 409 withdrawn.
            await store.release_withdrawal(self.pool, application_id)
            raise outcome_unknown("withdrawal", application_id, "Retry the withdrawal") from err
        self.appended()
        await store.advance_status(self.pool, application_id, "withdrawn", withdrawn_at)
        return {"application_id": application_id, "status": "withdrawn", "withdrawn_at": withdrawn_at.isoformat()}

    async def refusal(self, portal: PortalAccess, application_id: str) -> Problem:
        state = await store.withdrawal_state(self.pool, application_id, portal.portal_id)
        if state is None:
            return not_found()
        refused = withdrawal_refusal(state["status"])
        if refused:
            return Problem(409, *refused)
        return Problem(409, "application.withdrawal_pending", "A withdrawal of this application is under way")
