"""Review's composition root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from runtime.kit import ServiceKit
from runtime.problems import install_problem_handlers
from schemas.rules import load_rules
from schemas.topics import APPLICATIONS
from services.review.handlers import routes
from services.review.settings import ReviewSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def main() -> None:
    settings = ReviewSettings()
    rules = load_rules(settings.rules_file)
    kit = ServiceKit("review", settings)
    pool = await kit.database(MIGRATIONS)
    producer = kit.producer()
    relay = kit.outbox_relay(pool, producer)
    kit.consume("automatic", [APPLICATIONS], routes(rules), pool=pool, producer=producer, relay=relay)
    app = FastAPI(title="Thüringen E-Government funding: review", version="1.0.0")
    install_problem_handlers(app)
    kit.serve_http(app)
    await kit.run()
