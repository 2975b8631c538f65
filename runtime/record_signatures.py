"""HMAC-SHA256 signatures over a record's exact bytes, in the Standard Webhooks format.

A producer proves who it is to a consumer that cannot see the broker's principal: it signs
``f"{id}.{timestamp}.".encode() + value`` with a secret only it and the consumer hold, and sends

    egov-signature-id         the envelope id of the record
    egov-signature-timestamp  unix seconds when it signed
    egov-signature            "v1,<base64 HMAC>", several space-separated while a secret rotates

as Kafka headers. Secrets look like Standard Webhooks ones (``whsec_`` + base64 of 32 random bytes;
the HMAC key is the decoded bytes), so a portal may use any Standard Webhooks library to sign.

This is not ``runtime.signing``: that signs envelopes with Ed25519 so anyone with the published key
can check a decision offline. Here the verifier is one party (intake) that keeps per-portal state
anyway, so a shared secret is enough. Nor is it ``runtime.credentials``: a bearer token is kept only
as a hash, but an HMAC verifier must hold the secret itself. Pure: no I/O, the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

SIGNATURE_ID = "egov-signature-id"
SIGNATURE_TIMESTAMP = "egov-signature-timestamp"
SIGNATURE = "egov-signature"
SIGNATURE_HEADERS = (SIGNATURE_ID, SIGNATURE_TIMESTAMP, SIGNATURE)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
VERSION = "v1"
SECRET_BYTES = 32
MAX_SIGNATURES = 8  # more than a rotation needs; bounds the work one record can cause


class Verdict(StrEnum):
    VALID = "valid"
    UNSIGNED = "unsigned"  # a signature header is missing
    INVALID = "invalid"  # malformed, repeated, for another record, or by no key we hold
    STALE = "stale"  # authentic, but signed outside the tolerance window (past or future)


def new_secret() -> str:
    """A fresh secret in the form handed to the producer once."""
    return encode_secret(secrets.token_bytes(SECRET_BYTES))


def encode_secret(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode()


def decode_secret(secret: str) -> bytes:
    """The HMAC key in a ``whsec_`` secret; raises ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as err:
        raise ValueError("a signing secret is base64 after its prefix") from err
    if len(key) < 16:
        raise ValueError("a signing secret holds at least 16 bytes")
    return key


def signed_content(message_id: str, timestamp: int, value: bytes) -> bytes:
    return f"{message_id}.{timestamp}.".encode() + value


def sign(key: bytes, message_id: str, timestamp: int, value: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    digest = hmac.new(key, signed_content(message_id, timestamp, value), hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def signature_headers(
    keys: Sequence[bytes], message_id: str, value: bytes, *, now: float | None = None
) -> list[tuple[str, bytes]]:
    """The three headers, with one signature per key (sign with old and new while rotating)."""
    if not keys:
        raise ValueError("signing needs at least one key")
    timestamp = int(time.time() if now is None else now)
    signatures = " ".join(sign(key, message_id, timestamp, value) for key in keys)
    return [
        (SIGNATURE_ID, message_id.encode()),
        (SIGNATURE_TIMESTAMP, str(timestamp).encode()),
        (SIGNATURE, signatures.encode()),
    ]


def verify(
    keys: Sequence[bytes],
    headers: Sequence[tuple[str, bytes]],
    value: bytes,
    *,
    now: float,
    tolerance_seconds: float,
    expected_id: str | None = None,
) -> Verdict:
    """VALID if any listed ``v1`` signature matches any key, for this id, within the window around ``now``.

    A header given twice is INVALID: a record must not be able to show one verifier one id or time
    and another verifier another. Comparisons are constant-time.
    """
    found = {name: [v for k, v in headers if k == name] for name in SIGNATURE_HEADERS}
    if any(not values for values in found.values()):
        return Verdict.UNSIGNED
    if any(len(values) > 1 for values in found.values()):
        return Verdict.INVALID
    try:
        message_id = found[SIGNATURE_ID][0].decode()
        raw_timestamp = found[SIGNATURE_TIMESTAMP][0].decode()
        listed = found[SIGNATURE][0].decode().split()
    except UnicodeDecodeError:
        return Verdict.INVALID
    if not raw_timestamp.isascii() or not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
        return Verdict.INVALID
    if expected_id is not None and not hmac.compare_digest(message_id.encode(), expected_id.encode()):
        return Verdict.INVALID
    timestamp = int(raw_timestamp)
    offered = [s.removeprefix(f"{VERSION},").encode() for s in listed[:MAX_SIGNATURES] if s.startswith(f"{VERSION},")]
    expected = [sign(key, message_id, timestamp, value).removeprefix(f"{VERSION},").encode() for key in keys]
    # Every pair is compared, so the time taken does not tell which key or which signature matched.
    matched = False
    for candidate in offered:
        for good in expected:
            matched |= hmac.compare_digest(candidate, good)
    if not matched:
        return Verdict.INVALID
    if abs(now - timestamp) > tolerance_seconds:
        return Verdict.STALE
    return Verdict.VALID
