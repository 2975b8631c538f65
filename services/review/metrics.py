"""Review's domain metrics: review results by outcome, and what caseworkers do."""

from __future__ import annotations

from prometheus_client import Counter

# reviewer is "automatic" or "caseworker" (never the caseworker's id: labels stay bounded).
REVIEWS = Counter("egov_reviews_total", "Review results, by outcome and kind of reviewer", ["outcome", "reviewer"])
CASEWORKER_ACTIONS = Counter(
    "egov_caseworker_actions_total", "Caseworker actions: decided, proposed, confirmed, documents_requested", ["action"]
)
