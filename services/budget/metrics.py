"""Budget's domain metrics: money per fiscal year, the line, decisions."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POT = Gauge("egov_budget_pot_cents", "Fiscal-year pot", ["fiscal_year"])
AVAILABLE = Gauge("egov_budget_available_cents", "Money not reserved or committed", ["fiscal_year"])
RESERVED = Gauge("egov_budget_reserved_cents", "Money reserved, grant notice not yet issued", ["fiscal_year"])
COMMITTED = Gauge("egov_budget_committed_cents", "Money committed by grant notices", ["fiscal_year"])
WAITLIST_LENGTH = Gauge("egov_waitlist_length", "Eligible applications waiting for money")
WAITLIST_OLDEST_AGE = Gauge("egov_waitlist_oldest_age_seconds", "How long the first in line has waited")
DECISIONS = Counter("egov_decisions_total", "Final decisions", ["decision"])
DECISION_LATENCY = Histogram(
    "egov_decision_latency_seconds",
    "From receipt of the application to its final decision",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400, 7 * 86400, 30 * 86400),
)
