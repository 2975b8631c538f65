"""Review's composition root.

The active rules version is the file ``REVIEW_RULES_FILE`` names (default: egov-2024-v1). A new
version is loaded by pointing the setting at its file and restarting (rolling) the service: from
then on every review records the new version; reviews made before keep the version they recorded,
and so do the caseworker decisions on cases whose automatic review ran under it. A file whose
``valid_from`` lies in the future is refused at start-up: it is not in force yet.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from runtime.kit import ServiceKit
from schemas.rules import Rules, RulesFileError, load_rules
from services.review.api import build_api
from services.review.documents import IntakeDocuments
from services.review.handlers import routes
from services.review.metrics import counted
from services.review.settings import ReviewSettings
from services.review.topology import MIGRATIONS, REVIEW_TOPICS

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)


def active_rules(path: Path, today: date | None = None) -> Rules:
    rules = load_rules(path)
    today = today or datetime.now(UTC).date()
    if rules.valid_from > today:
        raise RulesFileError(f"rules file {path} ({rules.version}) is valid only from {rules.valid_from}")
    return rules


async def main() -> None:
    settings = ReviewSettings()
    rules = active_rules(settings.rules_file)
    kit = ServiceKit("review", settings)
    log.info("rules loaded", extra={"rules_version": rules.version, "valid_from": rules.valid_from.isoformat()})
    pool = await kit.database(MIGRATIONS)
    producer = kit.producer()
    relay = kit.outbox_relay(pool, producer)
    kit.consume("automatic", REVIEW_TOPICS, routes(rules), pool=pool, producer=producer, relay=relay, committed=counted)
    documents = IntakeDocuments(settings.intake_url, settings.intake_token.get_secret_value())
    kit.serve_http(build_api(pool, kit.commands(pool, relay, counted), documents))
    await kit.run()
