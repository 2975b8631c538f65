"""Standard Webhooks for portal callbacks: secrets and signatures (which URLs: ``destinations``).

A callback carries ``webhook-id`` (the stable notice id, so receivers de-duplicate),
``webhook-timestamp`` (seconds since the epoch, per attempt, so receivers can refuse
replays) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``
keyed with the portal's secret ``whsec_<base64>``. See https://www.standardwebhooks.com/.
The format is the one portals sign their Kafka submissions with, so both use ``runtime.record_signatures``.
"""

from __future__ import annotations

from runtime import record_signatures
from runtime.record_signatures import new_secret

__all__ = ["headers", "new_secret", "sign"]


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    return record_signatures.sign(record_signatures.decode_secret(secret), message_id, timestamp, body)


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }
