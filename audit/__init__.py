"""The audit trail rebuilt from the log alone: no service, no database, only the topics.

    python -m audit timeline APPLICATION_ID [--json]   # every event of one application, in order
    python -m audit budget YEAR [--json]               # a fiscal year's pot, reservations and line over time
    python -m audit verify [--public-key PEM] [--json] # check the guarantees over the whole log

``audit.reader`` loads every domain topic into memory; ``timeline``, ``budget``
and ``verify`` are pure functions over that list of envelopes.
"""
