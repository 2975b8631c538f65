"""Statistics' own metrics; the consumed-events counter, lag and HTTP metrics are the shared ones (runtime)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from services.statistics.domain import Dimension

TOTALS_WRITTEN = Counter("egov_statistics_totals_written_total", "Stored totals changed", ["dimension"])
REPLAYED_CHANGES = Counter(
    "egov_statistics_replayed_changes_total", "Totals that took in a replayed record's change after a restart"
)
APPLICATIONS = Gauge("egov_statistics_applications", "Applications this instance holds figures for")
for _dimension in Dimension:  # every series from the start, at zero (runtime.metrics.initialise_consumer_series)
    TOTALS_WRITTEN.labels(_dimension.value)
