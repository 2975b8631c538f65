"""The wiring every service repeats: database, producer, outbox relay, consumers, HTTP, lifecycle.

A service's composition root creates a ``ServiceKit``, asks it for the parts it
needs, adds its own routes, and calls ``run()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.commands import CommandRunner
from runtime.consumer import Handler, ReadToEnd, TransactionalConsumer
from runtime.db import create_pool, grant_runtime, migrate
from runtime.http import HttpLimits, HttpServer, ReadinessCheck, add_operational_routes, install_guards
from runtime.kafka import consumer_group, make_consumer, make_producer
from runtime.logs import configure_logging
from runtime.metrics import Committed, nothing_counted
from runtime.outbox import OutboxRelay
from runtime.service import Lifecycle, run_until_signalled
from runtime.tracing import configure_tracing
from schemas.topics import Topic, dead_letters

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from pathlib import Path

    import asyncpg
    from aiokafka import AIOKafkaProducer
    from fastapi import FastAPI

    from runtime.settings import ServiceSettings


class ServiceKit:
    def __init__(self, service: str, settings: ServiceSettings) -> None:
        self.service = service
        self.settings = settings
        self.lifecycle = Lifecycle()
        self.checks: dict[str, ReadinessCheck] = {}
        self.consumers: list[TransactionalConsumer] = []
        configure_logging(service, settings.log_level)
        configure_tracing(service)

    def client_id(self, role: str) -> str:
        return f"{self.service}-{role}-{self.settings.instance_id}"

    async def database(
        self,
        migrations: Path | None,
        *,
        max_size: int = 10,
        append_only: tuple[str, ...] = (),
        reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> asyncpg.Pool:
        """The runtime login's pool, after migrating. With ``database_owner_url`` the owner role
        migrates and then grants the runtime login its rights (``append_only`` tables: read and
        insert only); without it the runtime login migrates and owns the tables (development).
        ``reset``: see ``runtime.db.create_pool``."""
        tls = self.settings.database_tls()
        pool = await create_pool(self.settings.dsn, max_size=max_size, ssl=tls, reset=reset)
        directories = [migrations] if migrations else []
        if self.settings.owner_dsn is None:
            await migrate(pool, *directories)
        else:
            owner = await create_pool(self.settings.owner_dsn, max_size=1, ssl=tls)
            try:
                await migrate(owner, *directories)
                runtime_role = await pool.fetchval("SELECT current_user")
                async with owner.acquire() as conn:
                    if runtime_role == await conn.fetchval("SELECT current_user"):
                        raise RuntimeError("database_owner_url and database_url log in as the same role")
                    await grant_runtime(conn, runtime_role, append_only=append_only)
            finally:
                await owner.close()
        self.lifecycle.add("database", _noop, pool.close)

        async def database_reachable() -> bool:
            return bool(await pool.fetchval("SELECT true"))

        self.checks["database"] = database_reachable
        return pool

    def producer(self, role: str = "producer", *, delivery_timeout_ms: int = 30_000) -> AIOKafkaProducer:
        producer = make_producer(self.settings.kafka, self.client_id(role), delivery_timeout_ms=delivery_timeout_ms)
        self.lifecycle.add(f"kafka-{role}", producer.start, producer.stop)

        async def broker_reachable() -> bool:
            return bool(await producer.client.fetch_all_metadata())

        self.checks.setdefault("broker", broker_reachable)
        return producer

    def outbox_relay(self, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> OutboxRelay:
        relay = OutboxRelay(pool, producer)
        self.lifecycle.add("outbox-relay", relay.start, relay.stop)
        return relay

    def consume(
        self,
        name: str,
        topics: list[Topic],
        routes: Mapping[str, Handler],
        *,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        relay: OutboxRelay | None = None,
        committed: Committed = nothing_counted,
        read_to_end: ReadToEnd | None = None,
    ) -> TransactionalConsumer:
        """A consumer group ``<service>-<prefix><name>`` whose handlers run in the inbox/outbox transaction;
        ``committed`` counts the domain metrics from the events that transaction staged; ``read_to_end``
        hears after each round which partitions are read to their end (see ``TransactionalConsumer``)."""
        group = consumer_group(self.service, self.settings.consumer_group_prefix, name)
        consumer = TransactionalConsumer(
            name=group,
            consumer=make_consumer(
                self.settings.kafka,
                group,
                topics,
                self.client_id(name),
                session_timeout_ms=self.settings.kafka_session_timeout_ms,
                offset_reset=self.settings.kafka_offset_reset,
            ),
            topics=topics,
            pool=pool,
            routes=routes,
            dead_letter_producer=producer,
            dead_letter_topic=dead_letters(self.service),
            relay=relay,
            committed=committed,
            read_to_end=read_to_end,
        )
        self.lifecycle.add(f"consumer-{name}", consumer.start, consumer.stop)
        self.consumers.append(consumer)
        return consumer

    def commands(self, pool: asyncpg.Pool, relay: OutboxRelay, committed: Committed = nothing_counted) -> CommandRunner:
        """The runner for the service's HTTP commands (caseworker actions, budget administration)."""
        return CommandRunner(pool, relay, committed)

    def serve_http(self, app: FastAPI) -> None:
        async def consumers_running() -> bool:
            return all(c.running for c in self.consumers)

        async def caught_up() -> bool:
            # Ready only once every consumer has reached the end of its partitions after start.
            return all(c.caught_up.is_set() for c in self.consumers)

        if self.consumers:
            self.checks["consumers"] = consumers_running
            self.checks["caught_up"] = caught_up
        install_guards(app, self.settings)
        add_operational_routes(app, self.checks)  # its request metrics outermost: they count the 429s too
        server = HttpServer(app, self.settings.http_host, self.settings.http_port, HttpLimits.of(self.settings))
        self.lifecycle.add("http", server.start, server.stop)

    async def run(self) -> None:
        await run_until_signalled(self.lifecycle, self.settings.shutdown_grace_seconds)


async def _noop() -> None:
    return None
