"""Dead letters that always fit, and a consumer that never stalls on one.

A dead letter is the original record with why and where in headers. The original may itself be near
the size limit, and the copy adds headers, so it would not fit: the producer refuses it, the consumer
rewinds and fetches the same record again, forever. ``letter_of`` therefore truncates the copied value
(and, if the original headers and key alone are too large, drops them) so that the letter fits the
dead-letter topic's ``max_message_bytes``; the SHA-256 digest and size of the original value and its
origin (topic/partition/offset) travel in headers, so an operator can still match it with the
original in the source topic, which keeps it. ``send_dead_letter`` sends that, and if the broker
refuses even it for its size or content, a bare letter without the original bytes; if that is
refused too, the record is counted and logged, and the consumer moves on. A broker that is away is
another matter: that error is raised, and the consumer rewinds and retries (nothing is skipped).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from runtime.metrics import DEAD_LETTERS, DEAD_LETTERS_LOST

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer, ConsumerRecord

    from schemas.topics import Topic

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

DETAIL_LIMIT = 2000  # characters of the error kept in dlq_detail
KEY_LIMIT = 1024  # bytes of the original key kept when the letter must shrink
# What the broker may refuse a letter for, whatever its moment: retrying the same bytes cannot help.
REFUSED_FOR_ITS_CONTENT = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
)


@dataclass(frozen=True)
class Letter:
    key: bytes | None
    value: bytes | None
    headers: Headers


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """The size the producer holds against its limit (aiokafka's own upper-bound estimate)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


def provenance(record: ConsumerRecord[Any, Any], reason: str, detail: str, consumer: str) -> Headers:
    """Why and where the record came from, and what it was: digest and size of its value."""
    value: bytes = record.value or b""
    return [
        ("dlq_reason", reason.encode()),
        ("dlq_detail", detail[:DETAIL_LIMIT].encode()),
        ("dlq_origin", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ("dlq_consumer", consumer.encode()),
        ("dlq_original_size", str(len(value) if record.value is not None else -1).encode()),
        ("dlq_original_sha256", hashlib.sha256(value).hexdigest().encode()),
    ]


def letter_of(record: ConsumerRecord[Any, Any], meta: Headers, limit: int) -> Letter:
    """The original key, value and headers with ``meta``; shrunk to fit ``limit`` bytes if need be."""
    original: Headers = [(name, value or b"") for name, value in record.headers or ()]
    whole = Letter(record.key, record.value, [*original, *meta])
    if record_size(whole.key, whole.value, whole.headers) <= limit:
        return whole
    key, headers = record.key, [*original, *meta]
    if record_size(key, b"", [*headers, ("dlq_truncated", b"true")]) > limit:
        # Even without the value it does not fit: the original headers (or key) are the bulk.
        key = record.key[:KEY_LIMIT] if record.key is not None else None
        headers = [*meta, ("dlq_headers_dropped", str(len(original)).encode())]
    headers = [*headers, ("dlq_truncated", b"true")]
    value = (record.value or b"")[: max(0, limit - record_size(key, b"", headers))]
    # A longer value needs longer length varints: shave off what they added.
    while value and (excess := record_size(key, value, headers) - limit) > 0:
        value = value[: len(value) - excess]
    return Letter(key, value, headers)


def bare_letter(meta: Headers) -> Letter:
    """Only why and where: no original bytes at all."""
    return Letter(None, b"", [*meta, ("dlq_truncated", b"true"), ("dlq_value_dropped", b"true")])


async def send_dead_letter(
    producer: AIOKafkaProducer, topic: Topic, record: ConsumerRecord[Any, Any], reason: str, detail: str, consumer: str
) -> bool:
    """Park the record on ``topic``; False when not even a bare letter was taken (counted, logged).
    Raises the producer's error when the broker is away, so the caller retries the same record."""
    meta = provenance(record, reason, detail, consumer)
    origin = f"{record.topic}/{record.partition}/{record.offset}"
    for letter in (letter_of(record, meta, topic.max_message_bytes), bare_letter(meta)):
        try:
            await producer.send_and_wait(topic.name, letter.value, key=letter.key, headers=letter.headers)
        except REFUSED_FOR_ITS_CONTENT as err:
            log.warning("dead letter refused", extra={"origin": origin, "reason": reason, "error": repr(err)[:300]})
            continue
        DEAD_LETTERS.labels(record.topic, reason).inc()
        log.warning("message dead-lettered", extra={"reason": reason, "origin": origin})
        return True
    DEAD_LETTERS_LOST.labels(record.topic, reason).inc()
    log.error("message skipped: not even a bare dead letter was taken", extra={"reason": reason, "origin": origin})
    return False
