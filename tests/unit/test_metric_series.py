"""Every series a service can move exists at zero from its start: a consumer's, per topic it reads
and type it handles, and the domain counters with their bounded label values."""

from __future__ import annotations

from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from runtime.consumer import TransactionalConsumer
from schemas.topics import APPLICATIONS, REVIEWS, dead_letters
from services.budget import metrics as budget_metrics
from services.review import metrics as review_metrics
from services.statistics import metrics as statistics_metrics

pytestmark = pytest.mark.unit


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_consumer_creates_its_series_at_zero_before_its_first_record() -> None:
    async def handler(*_: Any) -> list[Any]:
        return []

    nothing = cast("Any", None)
    TransactionalConsumer(
        name="series-test",
        consumer=nothing,
        topics=[APPLICATIONS, REVIEWS],
        pool=nothing,
        routes={"de.thueringen.egov.application.reviewed.v1": handler},
        dead_letter_producer=nothing,
        dead_letter_topic=dead_letters("budget"),
    )
    reviewed = "de.thueringen.egov.application.reviewed.v1"
    topic = REVIEWS.name
    assert value("egov_events_consumed_total", topic=topic, type=reviewed, outcome="handled") == 0
    assert value("egov_events_consumed_total", topic=topic, type=reviewed, outcome="duplicate") == 0
    received = "de.thueringen.egov.application.received.v1"
    assert value("egov_events_consumed_total", topic=APPLICATIONS.name, type=received, outcome="ignored") == 0
    assert value("egov_events_consumed_total", topic=topic, type="unknown", outcome="unknown_type") == 0
    assert value("egov_handler_errors_total", type=reviewed, kind="transient") == 0
    assert value("egov_handler_seconds_count", type=reviewed) == 0
    assert value("egov_dead_letters_total", topic=topic, reason="undecodable") == 0


def test_domain_counters_have_every_label_value_from_the_start() -> None:
    assert budget_metrics.DECISIONS  # imported: its series are made at import
    assert review_metrics.REVIEWS
    assert statistics_metrics.TOTALS_WRITTEN
    for decision in ("approved", "rejected"):
        assert value("egov_decisions_total", decision=decision) is not None
    assert value("egov_reviews_total", outcome="needs_manual_review", reviewer="caseworker") is not None
    assert value("egov_caseworker_actions_total", action="documents_requested") is not None
    assert value("egov_statistics_totals_written_total", dimension="day") is not None
