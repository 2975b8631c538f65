"""Whether a submission on Kafka was written by the portal it names.

The broker authenticates whoever produces, but a consumer never learns that principal, so the
record proves its portal itself: a Standard Webhooks HMAC (``runtime.record_signatures``) over its
exact bytes, by one of the portal's active signing keys. The portal id the payload claims only
selects the keys to try; nothing else in the payload is looked at before the signature holds.

The window is measured against the record's own timestamp (set by the broker when the topic uses
LogAppendTime), not intake's clock: a record that waited in the topic while intake was down or
behind is still the portal's, and must not be refused for our delay (guarantee 1).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from runtime.consumer import wire_of
from runtime.record_signatures import Verdict, verify
from services.intake import store

if TYPE_CHECKING:
    import asyncpg

    from schemas.envelope import Envelope

log = logging.getLogger(__name__)


def claimed_portal(envelope: Envelope) -> str | None:
    portal_id = envelope.data.get("portal_id")
    return portal_id if isinstance(portal_id, str) and portal_id else None


async def authenticate(conn: asyncpg.Connection, envelope: Envelope, tolerance_seconds: float) -> Verdict:
    wire = wire_of(envelope)
    portal_id = claimed_portal(envelope)
    if wire is None or portal_id is None:
        verdict = Verdict.UNSIGNED
    else:
        keys = await store.signing_keys(conn, portal_id)
        arrived = wire.timestamp_ms / 1000 if wire.timestamp_ms is not None else time.time()
        verdict = verify(
            keys, wire.headers, wire.value, now=arrived, tolerance_seconds=tolerance_seconds, expected_id=envelope.id
        )
    if verdict is not Verdict.VALID:
        log.warning(
            "submission refused: not signed by the portal it names",
            extra={"event_id": envelope.id, "claimed_portal": (portal_id or "")[:200], "verdict": verdict.value},
        )
    return verdict
