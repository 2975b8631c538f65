"""Budget: fiscal-year pots, first-come-first-served reservations, the waitlist and the ledger.

Run with ``python -m services.budget``. PostgreSQL, not process memory, decides:
several instances may run in one consumer group.
"""
