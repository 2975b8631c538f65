"""Review: eligibility rules from the versioned rules file, and the caseworker queue.

Run with ``python -m services.review``.
"""
