"""Statistics' composition root: the faust app, its tables, one agent, and the HTTP edge.

The agent is the thin shell around ``handlers.handle``: per record it loads the application's figures, stores
what the handler returns, and applies the change to each total that has not taken it in yet. Every table is
in memory and rebuilt from its compacted changelog at start-up. faust runs at-least-once (its exactly-once
mode is not used: see the design brief); counting once is the handlers' and totals' business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import faust
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faust.auth import SASLCredentials, SSLCredentials
from mode import CrashingSupervisor, Service

from runtime.consumer import type_label
from runtime.http import HttpLimits, HttpServer, add_operational_routes, install_guards
from runtime.kafka import make_admin
from runtime.logs import configure_logging, correlated
from runtime.metrics import CONSUMER_LAG, EVENTS_CONSUMED, HANDLER_SECONDS
from runtime.service import service_cli
from services.statistics import metrics, totals
from services.statistics.api import build_api
from services.statistics.domain import Cell, Dimension, Figure
from services.statistics.handlers import Outcome, handle
from services.statistics.settings import StatisticsSettings
from services.statistics.topology import PARTITIONS, SOURCE_TOPICS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from faust.tables.manager import TableManager
    from faust.tables.wrappers import WindowWrapper
    from faust.types import EventT, TableT

    from runtime.kafka import KafkaAccess

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
# Daily windows are kept as long as the programme's figures are published: expiry would drop history.
KEEP_DAYS = timedelta(days=3660)
JSON_SCHEMA: faust.Schema[str, Any] = faust.Schema(key_serializer="json", value_serializer="json")


def credentials(kafka: KafkaAccess) -> SASLCredentials | SSLCredentials | None:
    """The principal's SCRAM login over the same verified TLS as every other client (``KafkaAccess``)."""
    if kafka.uses_sasl:
        context = kafka.tls_context() if kafka.uses_tls else None
        return SASLCredentials(
            username=kafka.username,
            password=kafka.password.get_secret_value(),
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    return SSLCredentials(kafka.tls_context()) if kafka.uses_tls else None


class Statistics:
    def __init__(self, settings: StatisticsSettings) -> None:
        kafka = settings.kafka
        self.app = faust.App(
            settings.app_id,
            broker=[f"kafka://{host}" for host in kafka.bootstrap.split(",")],
            broker_credentials=credentials(kafka),
            broker_client_id=f"statistics-{settings.instance_id}",
            broker_commit_interval=settings.commit_interval_seconds,
            broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
            consumer_auto_offset_reset=settings.kafka_offset_reset,
            store="memory://",
            topic_partitions=PARTITIONS,
            topic_replication_factor=settings.replication.factor,
            topic_disable_leader=True,  # no leader topic: one topic prefix, fewer ACLs
            table_standby_replicas=0,
            web_enabled=False,  # the HTTP edge is runtime's, like every service's
            processing_guarantee="at_least_once",
        )
        # Backpressure: faust holds the agent while more table updates than this wait to be sent. Each record
        # updates a handful of tables, so faust's default (100) stalls the agent every twenty records.
        self.app.producer.buffer.max_messages = 2000
        sources = self.app.topic(*[t.name for t in SOURCE_TOPICS], key_serializer="raw", value_serializer="raw")
        self.figures = self.table("figures")
        self.by = {
            dimension: self.table(f"by-{dimension.replace('_', '-')}")
            for dimension in (Dimension.CATEGORY, Dimension.DISTRICT, Dimension.APPLICANT_KIND)
        }
        self.daily = cast("WindowWrapper", self.table("decisions-per-day").tumbling(DAY, expires=KEEP_DAYS))
        self.read_to: dict[tuple[str, int], int] = {}
        # A failing record stops the process (the supervisor restarts it, the record comes again): an agent that
        # faust restarted in place could go on past it.
        self.app.agent(sources, name="count", supervisor_strategy=CrashingSupervisor)(self.count)
        self.app.timer(2.0)(self.measure_lag)

    def table(self, name: str) -> TableT[str, Any]:
        """A table in memory, its changelog ``<app id>-<name>-changelog`` compacted, co-partitioned with the sources."""
        return self.app.Table(name, schema=JSON_SCHEMA, partitions=PARTITIONS)

    async def count(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            self.take(event)

    def take(self, event: EventT[bytes]) -> None:
        """One record: fold it into its application's figures, then into the totals."""
        message = event.message
        started = time.perf_counter()
        key = message.key.decode() if message.key else ""
        step = handle(message.value or b"", f"{message.topic}:{message.offset}", self.figures.get(key))
        with correlated(step.application_id):
            if step.figures is not None:
                self.figures[key] = step.figures
            for cell, change in (step.delta or {}).items():
                self.add(message.partition, cell, change, message.topic, message.offset, step.outcome)
        kind = type_label(step.event_type or "")  # the registry's types, else "unknown": bounded like every consumer's
        EVENTS_CONSUMED.labels(message.topic, kind, step.outcome).inc()
        HANDLER_SECONDS.labels(kind).observe(time.perf_counter() - started)
        self.read_to[(message.topic, message.partition)] = message.offset

    def add(self, partition: int, cell: Cell, change: Figure, topic: str, offset: int, outcome: Outcome) -> None:
        if cell.dimension is Dimension.DAY:
            day = self.daily.relative_to(datetime.fromisoformat(cell.period).replace(tzinfo=UTC))
            key = totals.window_key(partition, cell)
            try:
                current = day[key].value()
            except KeyError:
                current = None
            if (updated := totals.add(current, change, topic, offset)) is not None:
                day[key] = updated
        else:
            table = self.by[cell.dimension]
            key = totals.table_key(partition, cell)
            if (updated := totals.add(table.get(key), change, topic, offset)) is None:
                return
            table[key] = updated
        metrics.TOTALS_WRITTEN.labels(cell.dimension).inc()
        if outcome is Outcome.REPLAYED:
            metrics.REPLAYED_CHANGES.inc()
            log.info("a replayed record's change reached a total that lacked it", extra={"dimension": cell.dimension})

    def totals(self) -> dict[Cell, Figure]:
        """Every total this instance holds, summed over its partitions."""
        return totals.rows([*self._stored_totals(), *self._stored_days()])

    def _stored_totals(self) -> Iterator[tuple[Cell, dict[str, Any]]]:
        for table in self.by.values():
            for key, value in list(table.items()):
                yield totals.cell_of(key), value

    def _stored_days(self) -> Iterator[tuple[Cell, dict[str, Any]]]:
        for (key, (start, _end)), value in list(self.daily.table.items()):
            day = datetime.fromtimestamp(start, UTC).date().isoformat()
            _partition, status = key.split("|")
            yield Cell(Dimension.DAY, day, "all", status), value

    async def measure_lag(self) -> None:
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic in {t.name for t in SOURCE_TOPICS}:
                read = self.read_to.get((tp.topic, tp.partition), -1)
                CONSUMER_LAG.labels(tp.topic, tp.partition).set(max(0, consumer.highwater(tp) - read - 1))
        metrics.APPLICATIONS.set(len(self.figures))

    async def create_changelogs(self, kafka: KafkaAccess, replication_factor: int) -> None:
        """Create the changelog topics before faust starts. Created by faust itself, a topic may still show no
        partitions in the consumer's metadata when the first record reaches its table, and faust refuses it."""
        tables = [*self.by.values(), self.figures]
        wanted = {t.changelog_topic.get_topic_name(): {"cleanup.policy": "compact"} for t in tables}
        retention = str(int(KEEP_DAYS.total_seconds() * 1000))
        wanted[self.daily.table.changelog_topic.get_topic_name()] = {
            "cleanup.policy": "compact,delete",
            "retention.ms": retention,
        }
        admin = make_admin(kafka, "statistics-changelogs")
        await admin.start()
        try:
            missing = set(wanted) - set(await admin.list_topics())
            if missing:
                new = [NewTopic(name, PARTITIONS, replication_factor, topic_configs=wanted[name]) for name in missing]
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(new)
                log.info("changelog topics created", extra={"topics": sorted(missing)})
        finally:
            await admin.close()

    async def ready(self) -> bool:
        recovery = cast("TableManager", self.app.tables).recovery
        return recovery.completed.is_set() and bool(self.app.consumer.assignment())


class Edge(Service):
    """The HTTP edge (runtime's server, guards, /health, /ready, /metrics) as a service of the faust worker."""

    def __init__(self, server: HttpServer) -> None:
        super().__init__()
        self.server = server

    async def on_start(self) -> None:
        await self.server.start()

    async def on_stop(self) -> None:
        await self.server.stop()


def main() -> None:
    service_cli("statistics")  # before faust, which would connect first and ask later
    settings = StatisticsSettings()
    configure_logging("statistics", settings.log_level)
    statistics = Statistics(settings)
    asyncio.run(statistics.create_changelogs(settings.kafka, settings.replication.factor))
    api = build_api(statistics.totals)
    install_guards(api, settings)
    add_operational_routes(api, {"tables_recovered": statistics.ready})
    server = HttpServer(api, settings.http_host, settings.http_port, HttpLimits.of(settings))
    worker = faust.Worker(statistics.app, Edge(server), loglevel=settings.log_level, override_logging=False, quiet=True)
    worker.execute_from_commandline()
