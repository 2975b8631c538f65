"""Notify: German notices to municipalities, delivered once, retried, recorded as events.

Run with ``python -m services.notify``.
"""
