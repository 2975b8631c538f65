"""Intake's composition root: the portal API, the Kafka ingress, the status view and their plumbing."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from runtime.kit import ServiceKit
from schemas.rules import load_rules
from services.intake.api import Intake, build_api
from services.intake.auth import Portals
from services.intake.documents_store import PostgresDocuments
from services.intake.handlers import CATEGORY_ROUTES, STATUS_ROUTES, ingress_routes
from services.intake.metrics import KAFKA_INGRESS_COMMITTED
from services.intake.publisher import BoundedPublisher
from services.intake.settings import IntakeSettings
from services.intake.submission import Submissions
from services.intake.topology import CATEGORY_TOPICS, MIGRATIONS, STATUS_TOPICS, SUBMISSION_TOPICS
from services.intake.uploads import Uploads
from services.intake.watermarks import Schedule, Watermarks
from services.intake.withdrawals import Withdrawals

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from runtime.outbox import Outgoing


async def keep_session(conn: asyncpg.Connection) -> None:
    """Intake's statements leave no session state behind (no LISTEN, cursors, SET or session
    locks; its advisory locks end with their transaction, and asyncpg still rolls back an open one),
    so a connection goes back to the pool without asyncpg's reset query: one round trip less for
    every statement the API runs and every transaction the consumers commit."""


async def main() -> None:
    settings = IntakeSettings()
    rules = load_rules(settings.rules_file)
    kit = ServiceKit("intake", settings)
    # One pool for the API, the consumers and the relay; /ready checks this same pool.
    pool = await kit.database(MIGRATIONS, max_size=settings.database_pool_size, reset=keep_session)
    # The outbox relay and dead letters: retried until the broker takes them.
    producer = kit.producer()
    relay = kit.outbox_relay(pool, producer)
    # What a portal waits for over HTTP: acknowledged within the bound, or given up (503).
    publisher = BoundedPublisher(settings.kafka, kit.client_id("api"), settings.publish_timeout_ms)
    kit.lifecycle.add("kafka-api-producer", publisher.start, publisher.stop)
    # Every instance tells budget, in the stream, up to when everything is appended (watermarks.py).
    watermarks = Watermarks(
        pool,
        publisher,
        settings.instance_id,
        timedelta(milliseconds=settings.watermark_claim_bound_ms),
        Schedule(interval=settings.watermark_interval_ms / 1000, heartbeat=settings.watermark_heartbeat_seconds),
    )
    kit.lifecycle.add("watermarks", watermarks.start, watermarks.stop)
    submissions = Submissions(pool, publisher, rules, settings, appended=watermarks.notice)
    ingress = ingress_routes(rules, submissions.quota, settings.submission_signature_tolerance_seconds)

    def ingress_committed(outgoing: Sequence[Outgoing]) -> None:
        # Received and rejected submissions are counted once their transaction committed, not in the handler.
        KAFKA_INGRESS_COMMITTED(outgoing)
        if outgoing:
            watermarks.notice()

    kit.consume(
        "submissions",
        SUBMISSION_TOPICS,
        ingress,
        pool=pool,
        producer=producer,
        relay=relay,
        committed=ingress_committed,
    )
    kit.consume(settings.status_view, STATUS_TOPICS, STATUS_ROUTES, pool=pool, producer=producer)
    kit.consume("categories", CATEGORY_TOPICS, CATEGORY_ROUTES, pool=pool, producer=producer)
    withdrawals = Withdrawals(pool, publisher, submissions.patience, appended=watermarks.notice)
    # Documents live in intake's own database by default; another DocumentStore (an S3-compatible one) fits here.
    uploads = Uploads(pool, PostgresDocuments(pool), rules.documents, relay, appended=watermarks.notice)
    intake = Intake(pool, Portals(pool, settings), submissions, withdrawals, settings, uploads)
    kit.serve_http(build_api(intake))
    await kit.run()
