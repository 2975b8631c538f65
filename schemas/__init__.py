"""The contract: event envelope, one frozen pydantic model per event, and the topic registry.

Everything that crosses a service boundary is defined here and nowhere else.
Regenerate the committed JSON Schemas with ``python -m schemas.generate``.
"""
