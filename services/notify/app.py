"""Notify's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from runtime.kit import ServiceKit
from runtime.problems import install_problem_handlers
from services.notify.delivery import Deliverer
from services.notify.handlers import routes
from services.notify.settings import NotifySettings
from services.notify.topology import MIGRATIONS, NOTICE_TOPICS


async def main() -> None:
    settings = NotifySettings()
    kit = ServiceKit("notify", settings)
    pool = await kit.database(MIGRATIONS)
    producer = kit.producer()
    relay = kit.outbox_relay(pool, producer)
    deliverer = Deliverer(pool, relay, settings)
    # A committed batch may have made notices: the deliverer claims them now instead of at its next poll.
    kit.consume(
        settings.consumer_name,
        NOTICE_TOPICS,
        routes(),
        pool=pool,
        producer=producer,
        relay=relay,
        committed=lambda _: deliverer.wake(),
    )
    kit.lifecycle.add("deliverer", deliverer.start, deliverer.stop)
    app = FastAPI(title="Thüringen E-Government funding: notify", version="1.0.0")
    install_problem_handlers(app)
    kit.serve_http(app)
    await kit.run()
