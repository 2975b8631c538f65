"""Review: eligibility rules from the versioned rules file, and the caseworker queue.

Run with ``python -m services.review``.

Automatic review (``handlers.py``): every ``application.received`` is checked against the rules
R01..R09 (``domain.py``) and answered with one ``application.reviewed`` (eligible, ineligible with
every failed rule, or needs_manual_review with why), recording the rules version and each rule's
finding. A redelivered event finds its inbox row; the same application under a new event id finds
its ``reviews`` row (primary key): either way there is no second result.

Caseworker queue (``api.py``, HTTP, bearer token per caseworker; the caseworker id is the principal;
each action is a command in ``caseworker_commands.py`` over the pure rules in ``casework.py``):

    GET  /v1/cases[?status=open&status=proposed|waiting_documents|decided]  oldest receipt first
    GET  /v1/cases/{id}                    the case, its automatic findings and its history
    POST /v1/cases/{id}/decision           {"outcome", "justification", "early_start_permitted"}
    POST /v1/cases/{id}/confirmation       four eyes: a second, different caseworker confirms
    POST /v1/cases/{id}/document-requests  {"documents": [...], "note"}: the case waits

Every action is an event on ``egov.reviews.v1`` naming the caseworker (envelope ``actor`` and
payload): ``application.review_proposed`` (above the four-eyes threshold),
``application.documents_requested``, and the decision that takes effect, an
``application.reviewed`` with ``reviewer`` = the caseworker and ``ready_at`` = the decision time.
Tokens: ``python -m services.review.caseworkers issue|revoke CASEWORKER_ID`` (only a hash is stored).

Rules versions: ``REVIEW_RULES_FILE`` names the active file (see ``app.py``); a new version applies to
cases reviewed after the service loaded it, earlier reviews and their cases keep theirs.
``python -m services.review.whatif --rules FILE --from DATE --to DATE`` replays a period under
another version and prints how outcomes would change, emitting nothing.

Metrics: ``egov_reviews_total{outcome,reviewer}`` and ``egov_caseworker_actions_total{action}``, counted
in ``metrics.py`` from the events a transaction staged, once it committed (consumer and commands alike).
"""
