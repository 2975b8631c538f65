"""An upload against its announcement: the header checks, the streamed count and hash, completeness."""

from __future__ import annotations

import hashlib

import pytest

from schemas.application import Attachment
from services.intake.documents import Fingerprint, Mismatch, before_reading, media_type_of, outstanding

pytestmark = pytest.mark.unit

ALLOWED = ("application/pdf", "image/png")
DATA = b"%PDF-1.4 Kostenplan"


def announced(data: bytes = DATA, algorithm: str = "sha256", media_type: str = "application/pdf") -> Attachment:
    return Attachment(
        file_name="kostenplan.pdf",
        media_type=media_type,
        size_bytes=len(data),
        kind="cost_plan",
        digest=f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}",
    )


def test_headers_that_match_the_announcement_pass() -> None:
    assert before_reading(announced(), "application/pdf; name=kostenplan.pdf", len(DATA), ALLOWED) is None
    assert before_reading(announced(), "Application/PDF", None, ALLOWED) is None


@pytest.mark.parametrize(
    ("media_type", "content_type", "length", "expected"),
    [
        ("application/zip", "application/zip", len(DATA), Mismatch.MEDIA_TYPE_NOT_ALLOWED),
        ("application/pdf", "image/png", len(DATA), Mismatch.MEDIA_TYPE_MISMATCH),
        ("application/pdf", None, len(DATA), Mismatch.MEDIA_TYPE_MISMATCH),
        ("application/pdf", "application/pdf", len(DATA) + 1, Mismatch.TOO_LARGE),
        ("application/pdf", "application/pdf", len(DATA) - 1, Mismatch.SIZE_MISMATCH),
    ],
)
def test_headers_that_contradict_the_announcement_are_refused_before_reading(
    media_type: str, content_type: str | None, length: int, expected: Mismatch
) -> None:
    refusal = before_reading(announced(media_type=media_type), content_type, length, ALLOWED)
    assert refusal is not None
    assert refusal.mismatch is expected


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_the_announced_bytes_in_pieces_match(algorithm: str) -> None:
    fingerprint = Fingerprint(announced(algorithm=algorithm))
    assert all(fingerprint.add(DATA[i : i + 3]) is None for i in range(0, len(DATA), 3))
    assert fingerprint.verdict() is None


def test_one_byte_more_is_refused_as_it_arrives() -> None:
    fingerprint = Fingerprint(announced())
    assert fingerprint.add(DATA) is None
    refusal = fingerprint.add(b"!")
    assert refusal is not None
    assert refusal.mismatch is Mismatch.TOO_LARGE


def test_too_few_bytes_or_other_bytes_are_refused_at_the_end() -> None:
    short, other = Fingerprint(announced()), Fingerprint(announced())
    short.add(DATA[:-1])
    other.add(DATA[:-1] + b"?")
    verdicts = [short.verdict(), other.verdict()]
    assert [v.mismatch if v else None for v in verdicts] == [Mismatch.SIZE_MISMATCH, Mismatch.DIGEST_MISMATCH]


def test_an_application_is_complete_when_no_announced_attachment_is_outstanding() -> None:
    three = [announced()] * 3
    assert outstanding(three, {0, 2}) == [1]
    assert outstanding(three, {0, 1, 2}) == []
    assert outstanding([], set()) == []


def test_media_type_of_drops_parameters_and_case() -> None:
    assert media_type_of(" Image/PNG ; q=1") == "image/png"
    assert media_type_of(None) == ""
