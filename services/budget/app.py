"""Budget's composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.kit import ServiceKit
from runtime.signing import load_signer
from schemas.rules import load_rules
from services.budget import store
from services.budget.api import build_api
from services.budget.handlers import routes
from services.budget.line import LineSettings
from services.budget.lineserver import LineServer
from services.budget.metrics import counted
from services.budget.settings import BudgetSettings
from services.budget.topology import LINE_TOPICS, MIGRATIONS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from runtime.outbox import Outgoing


def line_settings(settings: BudgetSettings) -> LineSettings:
    signer = load_signer(settings.signing_key_file, create_if_missing=settings.environment != "production")
    return LineSettings(
        settings.waitlist_policy,
        settings.commit_after_seconds,
        settings.year_close_policy,
        signer,
    )


async def main() -> None:
    settings = BudgetSettings()
    rules = load_rules(settings.rules_file)
    line = line_settings(settings)
    kit = ServiceKit("budget", settings)
    # The ledger is append-only twice over: a trigger refuses UPDATE/DELETE, and the runtime login lacks the grants.
    pool = await kit.database(MIGRATIONS, append_only=("ledger",))
    await store.seed_categories(pool, {c.id: c.open for c in rules.categories})
    producer = kit.producer()
    relay = kit.outbox_relay(pool, producer)
    # Decisions are counted from what each transaction committed, whichever path decided them.
    handlers = routes(line)
    server = LineServer(pool, relay, line, settings.line_interval_seconds, committed=counted)

    def committed(outgoing: Sequence[Outgoing]) -> None:
        counted(outgoing)
        server.wake()  # the batch may have put places in line

    kit.consume(
        "line",
        LINE_TOPICS,
        handlers,
        pool=pool,
        producer=producer,
        relay=relay,
        committed=committed,
    )
    kit.lifecycle.add("line-server", server.start, server.stop)
    kit.serve_http(build_api(pool, kit.commands(pool, relay, committed=counted), settings, line))
    await kit.run()
