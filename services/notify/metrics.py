"""Notify's domain metrics. Labels are bounded sets: notice type, channel, outcome; never ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from runtime.metrics import LATENCY_BUCKETS

# outcome: delivered | retry (an attempt failed, another is scheduled) | failed (given up, dead-lettered)
NOTICES = Counter("egov_notices_total", "Notice delivery attempts by outcome", ["notice_type", "channel", "outcome"])
ATTEMPT_SECONDS = Histogram(
    "egov_notice_attempt_seconds", "Time of one delivery attempt", ["channel"], buckets=LATENCY_BUCKETS
)
IN_FLIGHT = Gauge("egov_notices_in_flight", "Notices in hand in this instance: attempts running or waiting for a slot")
