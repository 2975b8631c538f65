"""Budget's domain metrics: money per fiscal year, the line, decisions.

The gauges mirror the pots and the line as the line server reads them from the database. The
counters are counted from the events a transaction committed (``counted``, wired in ``app.py``
for the consumer, the admin commands and the line server), never inside the transaction.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from runtime.metrics import Committed, count_committed
from schemas.events import ApplicationDecided, Decision

POT = Gauge("egov_budget_pot_cents", "Fiscal-year pot", ["fiscal_year"])
AVAILABLE = Gauge("egov_budget_available_cents", "Money not reserved or committed", ["fiscal_year"])
EARMARKED = Gauge("egov_budget_earmarked_cents", "Money earmarked for applications still in review", ["fiscal_year"])
RESERVED = Gauge("egov_budget_reserved_cents", "Money reserved, grant notice not yet issued", ["fiscal_year"])
COMMITTED = Gauge("egov_budget_committed_cents", "Money committed by grant notices", ["fiscal_year"])
WAITLIST_LENGTH = Gauge("egov_waitlist_length", "Applications in line waiting for money (in review or eligible)")
FRONTIER_LAG = Gauge(
    "egov_budget_arrival_frontier_lag_seconds",
    "How far the arrival frontier trails the clock: places younger than this are not decided yet",
)
LATE_ARRIVALS = Counter(
    "egov_budget_late_arrivals_total", "Applications that reached the line behind their partition's frontier"
)
WAITLIST_OLDEST_AGE = Gauge("egov_waitlist_oldest_age_seconds", "How long the first in line has waited")
DECISIONS = Counter("egov_decisions_total", "Final decisions", ["decision"])
DECISION_LATENCY = Histogram(
    "egov_decision_latency_seconds",
    "From receipt of the application to its final decision",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400, 7 * 86400, 30 * 86400),
)
for _decision in Decision:  # every series from the start, at zero (runtime.metrics.initialise_consumer_series)
    DECISIONS.labels(_decision.value)


def decision_made(decided: ApplicationDecided) -> None:
    DECISIONS.labels(decided.decision.value).inc()
    # Clamped: a receipt time from a clock ahead of ours must not make the histogram run backwards.
    DECISION_LATENCY.observe(max(0.0, (decided.decided_at - decided.received_at).total_seconds()))


counted: Committed = count_committed({ApplicationDecided: decision_made})
