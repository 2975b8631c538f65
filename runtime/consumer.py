"""The effectively-once consumer: inbox, state change and outbox in one transaction.

For each record: decode the envelope (undecodable bytes go to the dead-letter
topic with the reason; the envelope keeps the record's exact bytes and headers, see
``wire_of``), record its id in the inbox, run the routed handler and
stage what it returns, all in one PostgreSQL transaction. Offsets are committed
only after the batch's transactions have committed. A redelivered event finds
its inbox row and changes nothing.

Nothing is swallowed silently. A record whose Kafka key is not its envelope's subject (the id the
topic's ``key`` names: application, submission or fiscal year) is dead-lettered as ``wrong_key``:
it would sit on the wrong partition, out of order with its application's other events. A record of
a type the registry does not declare for its topic is counted (``egov_events_consumed_total`` with
outcome ``unknown_type``, type label ``unknown`` unless it is a registry type) and logged at
WARNING, and the stream moves on; it is not dead-lettered, so that a writer that adds a type before
its readers learn it does not fill their dead-letter topics (README, "How the guarantees are
carried"). A declared type this consumer has no route for is the normal case (it reads a shared
topic) and counted as ``ignored``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import PrivateAttr, ValidationError

from runtime.crashpoints import crash_point
from runtime.db import TRANSIENT_ERRORS
from runtime.deadletters import send_dead_letter
from runtime.kafka import stop_within
from runtime.logs import correlated
from runtime.metrics import (
    CONSUMER_LAG,
    EVENTS_CONSUMED,
    HANDLER_ERRORS,
    HANDLER_SECONDS,
    Committed,
    initialise_consumer_series,
    nothing_counted,
)
from runtime.outbox import OutboxRelay, Outgoing, remember_traces, stage, traced
from runtime.tracing import TRACEPARENT, consuming, within_record
from schemas.envelope import Envelope
from schemas.topics import EVENT_TYPES

if TYPE_CHECKING:
    import contextlib

    from schemas.topics import Topic

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[Sequence[Outgoing]]]
# Told after a round which partitions are read to their end, each with the time of the fetch that
# showed it (epoch ms): everything appended before then has been handled and committed.
ReadToEnd = Callable[[Sequence[tuple[str, int, int]]], Awaitable[None]]


@dataclass(frozen=True)
class Wire:
    """The record an envelope was decoded from, for checks over its exact bytes (a producer's signature)."""

    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None  # the record's timestamp (the broker's if the topic uses LogAppendTime)
    topic: str | None = None
    partition: int | None = None


class Delivered(Envelope):
    """An envelope as the consumer decoded it. Handlers still take an ``Envelope``; the few that
    must look at the record itself ask ``wire_of``, so no handler signature changes."""

    _wire: Wire | None = PrivateAttr(default=None)

    @classmethod
    def of(cls, record: ConsumerRecord[Any, Any]) -> Delivered:
        envelope = cls.from_bytes(record.value)
        envelope._wire = Wire(
            value=record.value,
            headers=tuple(record.headers or ()),
            timestamp_ms=record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None,
            topic=record.topic,
            partition=record.partition,
        )
        return envelope

    @property
    def wire(self) -> Wire | None:
        return self._wire


def wire_of(envelope: Envelope) -> Wire | None:
    """The raw record behind a consumed envelope; None for one built in memory (a test, a replay)."""
    return envelope.wire if isinstance(envelope, Delivered) else None


MAX_HANDLER_ATTEMPTS = 3


class Idempotent:
    """A handler whose effect is the same however often it runs (a watermark moved on with GREATEST).
    It takes no inbox row: a steady stream of such events would otherwise fill ``processed_events``
    with ids nobody asks for again."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, conn: asyncpg.Connection, envelope: Envelope) -> Sequence[Outgoing]:
        return await self.handler(conn, envelope)


def needs_inbox(handler: Handler) -> bool:
    return not isinstance(handler, Idempotent)


def type_label(event_type: str) -> str:
    """The event type as a metric label: the registry's types, else "unknown". The type comes from the
    record, and a label copied from outside input would let anyone who can write a topic mint series."""
    return event_type if event_type in EVENT_TYPES else "unknown"


def continued(consumer: str, envelope: Envelope) -> contextlib.AbstractContextManager[object]:
    """The span of handling this event, continuing the trace its record's ``traceparent`` names."""
    wire = wire_of(envelope)
    return consuming(
        wire.headers if wire else (),
        consumer=consumer,
        topic=wire.topic if wire else None,
        event_type=type_label(envelope.type),
        event_id=envelope.id,
    )


def traces_of(envelopes: Sequence[Envelope]) -> list[tuple[str, str]]:
    """(event id, traceparent) of the consumed envelopes whose records carried one."""
    traces = []
    for envelope in envelopes:
        wire = wire_of(envelope)
        parent = dict(wire.headers).get(TRACEPARENT) if wire else None
        if parent:
            traces.append((envelope.id, parent.decode("ascii", "replace")))
    return traces


async def handle_once(
    pool: asyncpg.Pool, consumer: str, handler: Handler, envelope: Envelope, committed: Committed = nothing_counted
) -> str:
    """Inbox row, state change and outgoing events in one transaction: "handled" or "duplicate".
    ``committed`` sees the staged events once the transaction has committed."""
    async with pool.acquire() as conn, conn.transaction():
        first_time = not needs_inbox(handler) or await conn.fetchval(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
            consumer,
            envelope.id,
        )
        if not first_time:
            return "duplicate"
        with continued(consumer, envelope):
            outgoing = traced(await handler(conn, envelope))
        await remember_traces(conn, traces_of([envelope]))
        await stage(conn, outgoing)
    committed(outgoing)
    return "handled"


async def handle_batch(
    pool: asyncpg.Pool, consumer: str, items: Sequence[tuple[Envelope, Handler]]
) -> tuple[list[str], list[Outgoing]]:
    """Like ``handle_once`` for many events in one transaction; raises (and rolls back all) if any fails."""
    async with pool.acquire() as conn, conn.transaction():
        fresh = {
            r["event_id"]
            for r in await conn.fetch(
                "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[])"
                " ON CONFLICT DO NOTHING RETURNING event_id",
                consumer,
                [envelope.id for envelope, handler in items if needs_inbox(handler)],
            )
        }
        outcomes: list[str] = []
        outgoing: list[Outgoing] = []
        for envelope, handler in items:
            if needs_inbox(handler):
                if envelope.id not in fresh:
                    outcomes.append("duplicate")
                    continue
                fresh.discard(envelope.id)  # a second copy in the same batch is a duplicate too
            started = time.perf_counter()
            with correlated(envelope.correlationid, envelope.id), continued(consumer, envelope):
                outgoing.extend(traced(await handler(conn, envelope)))
            HANDLER_SECONDS.labels(envelope.type).observe(time.perf_counter() - started)
            outcomes.append("handled")
        await remember_traces(conn, traces_of([e for e, _ in items]))
        await stage(conn, outgoing)  # one round trip for the whole batch's events, in order
    return outcomes, outgoing


Work = tuple[ConsumerRecord[Any, Any], Envelope, Handler]


class Stopping(Exception):
    """Raised inside the loop to abandon an unfinished batch without committing it."""


class TransactionalConsumer:
    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        topics: Sequence[Topic],
        pool: asyncpg.Pool,
        routes: Mapping[str, Handler],
        dead_letter_producer: AIOKafkaProducer,
        dead_letter_topic: Topic,
        relay: OutboxRelay | None = None,
        batch_size: int = 200,
        committed: Committed = nothing_counted,
        read_to_end: ReadToEnd | None = None,
    ) -> None:
        self.name = name
        self._read_to_end = read_to_end
        self._committed = committed
        self._batch_size = batch_size
        self._consumer = consumer
        self._topics = {topic.name: topic for topic in topics}
        self._pool = pool
        self._routes = routes
        self._dlq_producer = dead_letter_producer
        self._dlq_topic = dead_letter_topic
        self._relay = relay
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # Per partition, the first offset of the batch in hand until its offsets are committed.
        self._unfinished: dict[TopicPartition, int] = {}
        self.caught_up = asyncio.Event()
        declared = {topic.name: [cls.wire_type() for cls in topic.event_types] for topic in topics}
        initialise_consumer_series(declared, [t for types in declared.values() for t in types if t in routes])

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def stop(self) -> None:
        """Finish the batch in hand, commit its offsets, leave the group."""
        self._stopping = True
        if self._task:
            await self._task
        await stop_within(self._consumer)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._round()
            except Stopping:
                return  # uncommitted records are redelivered to whoever takes the partitions
            except KafkaError:
                # The broker is away or the group is moving. Go back to the last committed offsets, so
                # a record fetched but not finished (say, its dead letter could not be sent) comes again.
                log.warning("consumer round failed, rewinding and retrying", exc_info=True)
                await asyncio.sleep(1.0)
                await self._rewind()

    async def _rewind(self) -> None:
        """Back to the first record of the batch that was not finished. Not to the committed offsets:
        a group that has committed nothing yet has none, and aiokafka's ``seek_to_committed`` then
        stays where the fetch left it, past the unfinished records."""
        unfinished, self._unfinished = self._unfinished, {}
        assigned = self._consumer.assignment()
        for tp, offset in unfinished.items():
            if tp in assigned:  # a partition lost meanwhile is redelivered to its new owner anyway
                self._consumer.seek(tp, offset)

    async def _round(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=200, max_records=500)
        if not batch:
            await self._observe_lag()
            return
        self._unfinished = {tp: records[0].offset for tp, records in batch.items() if records}
        await self._process_batch([r for records in batch.values() for r in records])
        crash_point("consumer.after_commit")
        try:
            await self._consumer.commit()
        except (CommitFailedError, IllegalStateError):
            # The group rebalanced mid-batch: whoever owns the partitions now gets the records
            # again, and the inbox makes the second handling a no-op.
            log.warning("offset commit lost to a rebalance; records will be redelivered")
        self._unfinished = {}
        if self._relay:
            self._relay.wake()
        await self._observe_lag()

    async def _observe_lag(self) -> None:
        """Publish lag per partition; mark caught up once every assigned partition is at its end."""
        behind, known = 0, 0
        at_end: list[tuple[str, int, int]] = []
        assignment = self._consumer.assignment()
        for tp in assignment:
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue  # nothing fetched from this partition yet
            lag = max(0, highwater - await self._consumer.position(tp))
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
            behind += lag
            known += 1
            fetched_at = self._consumer.last_poll_timestamp(tp)
            if lag == 0 and fetched_at is not None:
                at_end.append((tp.topic, tp.partition, fetched_at))
        if assignment and known == len(assignment) and behind == 0:
            self.caught_up.set()
        if self._read_to_end is not None and at_end:
            try:
                await self._read_to_end(at_end)
            except TRANSIENT_ERRORS:
                log.warning("could not record read-to-end partitions; the next round will", exc_info=True)

    async def _process_batch(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        """Fast path: the whole batch in one transaction (one commit, not one per event).
        If anything in it fails, the batch is rolled back and handled record by record."""
        work: list[Work] = []
        for record in records:
            try:
                envelope: Envelope = Delivered.of(record)
            except (ValidationError, ValueError, TypeError) as err:
                await self._dead_letter(record, "undecodable", str(err))
                continue
            if record.key is None or record.key != envelope.subject.encode():
                await self._dead_letter(record, "wrong_key", self._wrong_key(record))
                continue
            handler = self._routes.get(envelope.type)
            if handler is None:
                self._not_routed(record, envelope)
                continue
            work.append((record, envelope, handler))
        for start in range(0, len(work), self._batch_size):
            chunk = work[start : start + self._batch_size]
            try:
                outcomes, outgoing = await handle_batch(self._pool, self.name, [(e, h) for _, e, h in chunk])
            except Exception:
                log.info("batch failed, handling its records one by one", exc_info=True)
                for record, envelope, handler in chunk:
                    await self._process(record, envelope, handler)
                continue
            self._committed(outgoing)
            for (record, envelope, _), outcome in zip(chunk, outcomes, strict=True):
                EVENTS_CONSUMED.labels(record.topic, envelope.type, outcome).inc()
                self._log_outcome(envelope, outcome)

    async def _process(self, record: ConsumerRecord[Any, Any], envelope: Envelope, handler: Handler) -> None:
        with correlated(envelope.correlationid, envelope.id):
            outcome = await self._handle(handler, envelope, record)
        EVENTS_CONSUMED.labels(record.topic, envelope.type, outcome).inc()
        self._log_outcome(envelope, outcome)

    def _log_outcome(self, envelope: Envelope, outcome: str) -> None:
        """One INFO line per routed event: which application, which event, what came of it, in which trace."""
        wire = wire_of(envelope)
        with correlated(envelope.correlationid, envelope.id), within_record(wire.headers if wire else ()):
            log.info(
                "event %s",
                outcome,
                extra={"event_type": type_label(envelope.type), "outcome": outcome, "consumer": self.name},
            )

    async def _handle(self, handler: Handler, envelope: Envelope, record: ConsumerRecord[Any, Any]) -> str:
        failures = 0
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                return await self._transact(handler, envelope)
            except ValidationError as err:
                HANDLER_ERRORS.labels(envelope.type, "invalid_payload").inc()
                await self._dead_letter(record, "invalid_payload", str(err))
                return "dead_lettered"
            except TRANSIENT_ERRORS:
                HANDLER_ERRORS.labels(envelope.type, "transient").inc()
                log.warning("database unavailable, retrying event", extra={"event_id": envelope.id}, exc_info=True)
            except Exception as err:
                failures += 1
                HANDLER_ERRORS.labels(envelope.type, "handler").inc()
                log.exception("handler failed", extra={"event_id": envelope.id, "attempt": failures})
                if failures >= MAX_HANDLER_ATTEMPTS:
                    await self._dead_letter(record, "handler_error", repr(err))
                    return "dead_lettered"
            finally:
                HANDLER_SECONDS.labels(envelope.type).observe(time.perf_counter() - started)
            if self._stopping:
                raise Stopping
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _transact(self, handler: Handler, envelope: Envelope) -> str:
        return await handle_once(self._pool, self.name, handler, envelope, self._committed)

    def _wrong_key(self, record: ConsumerRecord[Any, Any]) -> str:
        topic = self._topics.get(record.topic)
        names = topic.key if topic else "the subject"
        state = "no key" if record.key is None else "a key that is not the envelope's subject"
        return f"the record has {state}; {record.topic} is keyed by {names}, the envelope's subject"

    def _not_routed(self, record: ConsumerRecord[Any, Any], envelope: Envelope) -> None:
        """A declared type this consumer does not handle is ignored; a type its topic does not declare
        is counted and reported (type and origin only: never the payload)."""
        topic = self._topics.get(record.topic)
        label = type_label(envelope.type)
        if topic is not None and topic.declares(envelope.type):
            EVENTS_CONSUMED.labels(record.topic, label, "ignored").inc()
            return
        EVENTS_CONSUMED.labels(record.topic, label, "unknown_type").inc()
        with correlated(envelope.correlationid[:200], envelope.id[:200]):
            self._warn_unknown(record, envelope)

    def _warn_unknown(self, record: ConsumerRecord[Any, Any], envelope: Envelope) -> None:
        log.warning(
            "event of a type its topic does not declare, skipped",
            extra={
                "event_type": envelope.type[:200],
                "event_id": envelope.id,
                "origin": f"{record.topic}/{record.partition}/{record.offset}",
                "consumer": self.name,
            },
        )

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], reason: str, detail: str) -> None:
        """Park the original bytes with why and where they came from; the stream keeps flowing, and
        one record that cannot be parked is skipped (counted and logged), never retried forever."""
        await send_dead_letter(self._dlq_producer, self._dlq_topic, record, reason, detail, self.name)
