"""Intake's watermark rule, its schedule, and how every reader meets a watermark record, without a broker."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner

from audit.reader import LogRead, decode_into
from runtime.consumer import Idempotent, needs_inbox
from schemas.envelope import Envelope
from schemas.events import IntakeWatermark
from schemas.topics import APPLICATIONS, RECORD_AGE_MS, STREAM_MARKERS
from services.budget.handlers import routes
from services.budget.line import LineSettings
from services.intake.handlers import STATUS_ROUTES
from services.intake.landing import partition_of
from services.intake.watermarks import HOLD, Schedule, watermark
from services.statistics.handlers import FOLDS

pytestmark = pytest.mark.unit

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
BOUND = timedelta(milliseconds=500)


def test_with_nothing_pending_the_watermark_trails_the_clock_by_the_claim_bound() -> None:
    assert watermark(NOW, BOUND) == NOW - BOUND
    assert watermark(NOW, BOUND, None, None, None) == NOW - BOUND


def test_the_earliest_unappended_place_holds_the_watermark_back() -> None:
    claim, staged = NOW - timedelta(seconds=3), NOW - timedelta(seconds=1)
    assert watermark(NOW, BOUND, claim, None, staged) == claim
    assert watermark(NOW, BOUND, None, NOW - timedelta(seconds=7), staged) == NOW - timedelta(seconds=7)


def test_something_pending_after_the_bound_does_not_hold_it_back() -> None:
    # A claim made just now (its receipt 100 ms old) is above NOW - BOUND: the bound decides.
    assert watermark(NOW, BOUND, NOW - timedelta(milliseconds=100)) == NOW - BOUND


def test_a_claim_given_up_holds_the_watermark_only_past_the_brokers_record_age_bound() -> None:
    # The broker refuses a record older than RECORD_AGE_MS: the hold must outlast that, never end before.
    refused_after = timedelta(milliseconds=RECORD_AGE_MS)
    assert refused_after < HOLD < timedelta(minutes=2)


def test_the_schedule_is_fast_while_applications_flow_and_slow_when_idle() -> None:
    schedule = Schedule(interval=0.15, quiet=3.0, held=1.0, heartbeat=10.0)
    assert schedule.wait(since_activity=0.0, held_back=False) == 0.15
    assert schedule.wait(since_activity=2.9, held_back=True) == 0.15
    assert schedule.wait(since_activity=3.1, held_back=True) == 1.0
    assert schedule.wait(since_activity=3.1, held_back=False) == 10.0


def test_the_applications_topic_refuses_records_older_than_the_bound() -> None:
    assert APPLICATIONS.config["message.timestamp.before.max.ms"] == str(RECORD_AGE_MS)
    assert APPLICATIONS.declares(IntakeWatermark.wire_type())


def test_the_landing_check_reads_the_partition_the_producer_wrote_to() -> None:
    rng = random.Random(7)
    for _ in range(200):
        key = f"TH-EGOV-2027-{rng.randrange(10**6):06d}"
        partitions = rng.choice([1, 3, 6, 12])
        assert partition_of(key, partitions) == DefaultPartitioner()(key.encode(), list(range(partitions)), [])


def mark() -> Envelope:
    event = IntakeWatermark(watermark=NOW, partition=2, instance="intake-a")
    return Envelope.wrap(event, source="/egov/intake", subject="intake-watermark")


def test_budget_moves_its_frontier_on_a_watermark_without_an_inbox_row() -> None:
    handler = routes(LineSettings())[IntakeWatermark.wire_type()]
    assert isinstance(handler, Idempotent)
    assert not needs_inbox(handler)


def test_the_other_readers_ignore_a_watermark() -> None:
    assert IntakeWatermark.wire_type() not in STATUS_ROUTES
    assert IntakeWatermark.wire_type() not in FOLDS
    read = LogRead()
    decode_into(read, APPLICATIONS, "egov.applications.v1/2/7", mark().to_bytes())
    assert read.envelopes == []  # no part of any history
    assert read.unreadable == []  # and known
    assert IntakeWatermark.wire_type() in STREAM_MARKERS
