"""Intake's composition root: wires the API, the status projection and their plumbing."""

from __future__ import annotations

from pathlib import Path

from runtime.kit import ServiceKit
from schemas.rules import load_rules
from schemas.topics import APPLICATIONS, BUDGET, DECISIONS, NOTIFICATIONS, REVIEWS
from services.intake.api import Intake, build_api
from services.intake.handlers import STATUS_ROUTES
from services.intake.settings import IntakeSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def main() -> None:
    settings = IntakeSettings()
    rules = load_rules(settings.rules_file)
    kit = ServiceKit("intake", settings)
    pool = await kit.database(MIGRATIONS)
    producer = kit.producer(delivery_timeout_ms=settings.publish_timeout_ms)
    kit.consume(
        "status", [APPLICATIONS, REVIEWS, BUDGET, DECISIONS, NOTIFICATIONS], STATUS_ROUTES, pool=pool, producer=producer
    )
    kit.serve_http(build_api(Intake(pool, producer, rules, settings)))
    await kit.run()
