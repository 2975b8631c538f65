"""A portal withdraws its application: allowed from received until decided, published with acks=all.

A withdrawal is first marked in the status row, so two concurrent requests publish one event; its
event id is derived from the application id, so a retry after a lost acknowledgement (answered 503
``broker.outcome_unknown``: it may have landed) publishes the same event, which every consumer
de-duplicates; once the status view has seen it, a retry is answered 409 ``application.withdrawn``.

With an ``Idempotency-Key`` (``runtime.idempotency``: ``command_keys``, per portal) the same key and
request get the first answer again, and another request under the key 409 ``idempotency.key_reused``,
as for a submission, whose keys a withdrawal will not take either. A keyed retry after a 503 settles
the unknown outcome: if the withdrawal landed meanwhile, the answer is the 202 the first request
would have had (the same ``withdrawn_at``), not a 409.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from runtime import idempotency
from runtime.idempotency import Answer
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
WITHDRAWN = 202
# Refusals a keyed request must not keep its key for (its retry is judged afresh); an unknown
# outcome keeps it, so that the retry settles it.
UNSETTLED = "broker.outcome_unknown"


def answer(application_id: str, withdrawn_at: datetime) -> dict[str, Any]:
    return {"application_id": application_id, "status": "withdrawn", "withdrawn_at": withdrawn_at.isoformat()}


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

    async def withdraw(
        self, portal: PortalAccess, application_id: str, reason: str | None, key: str | None = None, request: str = ""
    ) -> dict[str, Any]:
        """The 202 answer, or a Problem; ``request`` is the ``idempotency.fingerprint`` of a keyed one."""
        if key is None:
            return await self.attempt(portal, application_id, reason)
        if await store.idempotency_record(self.pool, portal.portal_id, key) is not None:
            raise idempotency.key_reused()  # a submission's key: one key, one request
        principal = f"portal:{portal.portal_id}"
        claim = await idempotency.claim(self.pool, principal, key, request)
        if claim.answer is not None:
            return dict(claim.answer.body)
        try:
            if claim.earlier:
                answer = await self.settle(portal, application_id, reason, principal, key)
            else:
                answer = await self.attempt(portal, application_id, reason)
        except Problem as problem:
            if problem.code != UNSETTLED:
                await idempotency.release(self.pool, principal, key)
            raise
        await idempotency.answered(self.pool, principal, key, Answer(WITHDRAWN, answer))
        return answer

    async def settle(
        self, portal: PortalAccess, application_id: str, reason: str | None, principal: str, key: str
    ) -> dict[str, Any]:
        """An earlier request holds the key without an answer: wait while it is in flight, then do what it
        did not finish. A withdrawal that has landed meanwhile (that request's, or any: it is the same
        event) is this key's 202 with the first attempt's time."""
        deadline = time.monotonic() + self.in_flight.total_seconds() + 1
        while True:
            try:
                return await self.attempt(portal, application_id, reason)
            except Problem as problem:
                if problem.code == "application.already_withdrawn":
                    landed = await store.withdrawal_state(self.pool, application_id, portal.portal_id)
                    if landed is not None and landed["withdrawal_first_requested_at"] is not None:
                        return answer(application_id, landed["withdrawal_first_requested_at"])
                if problem.code != "application.withdrawal_pending" or time.monotonic() > deadline:
                    raise
            first = await idempotency.first_answer(self.pool, principal, key)
            if first is not None:
                return dict(first.body)
            await asyncio.sleep(0.05)

    async def attempt(self, portal: PortalAccess, application_id: str, reason: str | None) -> dict[str, Any]:
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
        return answer(application_id, withdrawn_at)

    async def refusal(self, portal: PortalAccess, application_id: str) -> Problem:
        state = await store.withdrawal_state(self.pool, application_id, portal.portal_id)
        if state is None:
            return not_found()
        refused = withdrawal_refusal(state["status"])
        if refused:
            return Problem(409, *refused)
        return Problem(409, "application.withdrawal_pending", "A withdrawal of this application is under way")
