"""Review's domain metrics: review results by outcome, and what caseworkers do.

Counted by ``counted``, the committed hook ``app.py`` gives the automatic consumer and the caseworker
command runner: from the events a transaction staged, once it has committed, so a rolled-back
decision or a batch handled again one event at a time is counted once or not at all.
"""

from __future__ import annotations

from prometheus_client import Counter

from runtime.metrics import count_committed
from schemas.events import ApplicationReviewed, DocumentsRequested, ReviewOutcome, ReviewProposed
from services.review.casework import Action, decision_action
from services.review.domain import AUTOMATIC

CASEWORKER = "caseworker"

# reviewer is "automatic" or "caseworker" (never the caseworker's id: labels stay bounded).
REVIEWS = Counter("egov_reviews_total", "Review results, by outcome and kind of reviewer", ["outcome", "reviewer"])
CASEWORKER_ACTIONS = Counter(
    "egov_caseworker_actions_total", "Caseworker actions: decided, proposed, confirmed, documents_requested", ["action"]
)
# Every series from the start, at zero (runtime.metrics.initialise_consumer_series says why).
for _outcome in ReviewOutcome:
    for _reviewer in (AUTOMATIC, CASEWORKER):
        REVIEWS.labels(_outcome.value, _reviewer)
for _action in Action:
    CASEWORKER_ACTIONS.labels(_action.value)


def _reviewed(reviewed: ApplicationReviewed) -> None:
    if reviewed.reviewer == AUTOMATIC:
        REVIEWS.labels(reviewed.outcome.value, AUTOMATIC).inc()
        return
    REVIEWS.labels(reviewed.outcome.value, CASEWORKER).inc()
    CASEWORKER_ACTIONS.labels(decision_action(reviewed.findings)).inc()


def _proposed(_: ReviewProposed) -> None:
    CASEWORKER_ACTIONS.labels(Action.PROPOSED).inc()


def _documents_requested(_: DocumentsRequested) -> None:
    CASEWORKER_ACTIONS.labels(Action.DOCUMENTS_REQUESTED).inc()


counted = count_committed(
    {ApplicationReviewed: _reviewed, ReviewProposed: _proposed, DocumentsRequested: _documents_requested}
)
