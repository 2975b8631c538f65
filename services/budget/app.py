"""Budget's composition root."""

from __future__ import annotations

from pathlib import Path

from runtime.kit import ServiceKit
from schemas.rules import load_rules
from schemas.topics import REVIEWS
from services.budget import store
from services.budget.api import build_api
from services.budget.handlers import routes
from services.budget.settings import BudgetSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def main() -> None:
    settings = BudgetSettings()
    rules = load_rules(settings.rules_file)
    kit = ServiceKit("budget", settings)
    pool = await kit.database(MIGRATIONS)
    await store.seed_categories(pool, {c.id: c.open for c in rules.categories})
    producer = kit.producer()
    relay = kit.outbox_relay(pool, producer)
    kit.consume("line", [REVIEWS], routes(settings.waitlist_policy), pool=pool, producer=producer, relay=relay)
    kit.serve_http(build_api(pool, relay, settings))
    await kit.run()
