"""Intake: the portal-facing API, validation, idempotency and the status read model.

Run with ``python -m services.intake``.
"""
