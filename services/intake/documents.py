"""Whether an uploaded attachment is the one announced: pure, no I/O.

An application announces each attachment (file name, media type, size, digest); the portal uploads
the bytes afterwards, as FIT-Connect does, and they must match. The checks that need only the request
headers run before a byte is read; size and digest once the last byte has been counted and hashed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from schemas.application import Attachment


class Mismatch(StrEnum):
    """Why an upload is not the announced attachment; the value is the problem code."""

    MEDIA_TYPE_NOT_ALLOWED = "document.media_type_not_allowed"
    MEDIA_TYPE_MISMATCH = "document.media_type_mismatch"
    TOO_LARGE = "document.too_large"
    SIZE_MISMATCH = "document.size_mismatch"
    DIGEST_MISMATCH = "document.digest_mismatch"


@dataclass(frozen=True)
class Refusal:
    mismatch: Mismatch
    detail: str


def media_type_of(content_type: str | None) -> str:
    """The media type of a Content-Type header, without parameters, lower case."""
    return (content_type or "").split(";")[0].strip().lower()


def before_reading(
    announced: Attachment, content_type: str | None, content_length: int | None, allowed: Collection[str]
) -> Refusal | None:
    """What the headers alone refute: the media type, and a declared length other than announced."""
    announced_type = announced.media_type.lower()
    if announced_type not in allowed:
        return Refusal(Mismatch.MEDIA_TYPE_NOT_ALLOWED, f"{announced.media_type} is not a format the rules accept")
    if media_type_of(content_type) != announced_type:
        return Refusal(Mismatch.MEDIA_TYPE_MISMATCH, f"Send the attachment as {announced.media_type}, as announced")
    if content_length is not None and content_length > announced.size_bytes:
        return too_large(announced)
    if content_length is not None and content_length < announced.size_bytes:
        return size_mismatch(announced, content_length)
    return None


def too_large(announced: Attachment) -> Refusal:
    return Refusal(Mismatch.TOO_LARGE, f"The attachment was announced with {announced.size_bytes} bytes")


def size_mismatch(announced: Attachment, size: int) -> Refusal:
    return Refusal(Mismatch.SIZE_MISMATCH, f"{size} bytes arrived, {announced.size_bytes} were announced")


class Fingerprint:
    """Counts and hashes the bytes as they stream past, with the algorithm the announcement names."""

    def __init__(self, announced: Attachment) -> None:
        self.announced = announced
        algorithm, _, self.expected = announced.digest.partition(":")
        self.hash = hashlib.new(algorithm)
        self.size = 0

    def add(self, data: bytes) -> Refusal | None:
        """None while the bytes may still be the announced ones; a refusal as soon as there are too many."""
        self.size += len(data)
        if self.size > self.announced.size_bytes:
            return too_large(self.announced)
        self.hash.update(data)
        return None

    def verdict(self) -> Refusal | None:
        """After the last byte: None if size and digest are the announced ones."""
        if self.size != self.announced.size_bytes:
            return size_mismatch(self.announced, self.size)
        if self.hash.hexdigest() != self.expected:
            return Refusal(Mismatch.DIGEST_MISMATCH, f"The bytes do not match the announced {self.hash.name} digest")
        return None


def outstanding(announced: Sequence[object], arrived: Collection[int]) -> list[int]:
    """The announced attachments (by position) that have not arrived yet; none left means complete."""
    return [n for n in range(len(announced)) if n not in arrived]


# RFC 9530 algorithm names and ours ("sha256:<hex>", as attachments are announced).
DIGEST_ALGORITHMS = {"sha-256": "sha256", "sha-512": "sha512"}


def declared_digest(content_digest: str | None) -> str | None:
    """A request's Content-Digest (RFC 9530: ``sha-256=:<base64>:``) as ``sha256:<hex>``; None if it
    names no algorithm we verify with, or is malformed. With several, the strongest is taken."""
    found: dict[str, str] = {}
    for member in (content_digest or "").split(","):
        name, _, value = member.strip().partition("=")
        algorithm = DIGEST_ALGORITHMS.get(name.strip().lower())
        value = value.strip()
        if algorithm is None or len(value) < 3 or not (value.startswith(":") and value.endswith(":")):
            continue
        try:
            raw = base64.b64decode(value[1:-1], validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == hashlib.new(algorithm).digest_size:
            found[algorithm] = raw.hex()
    for algorithm in ("sha512", "sha256"):
        if algorithm in found:
            return f"{algorithm}:{found[algorithm]}"
    return None
