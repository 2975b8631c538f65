"""Statistics' own metrics; the consumed-events counter, lag and HTTP metrics are the shared ones (runtime)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TOTALS_WRITTEN = Counter("egov_statistics_totals_written_total", "Stored totals changed", ["dimension"])
REPLAYED_CHANGES = Counter(
    "egov_statistics_replayed_changes_total", "Totals that took in a replayed record's change after a restart"
)
APPLICATIONS = Gauge("egov_statistics_applications", "Applications this instance holds figures for")
