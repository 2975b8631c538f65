"""The headers a caseworker's document download carries: pure, no I/O."""

from __future__ import annotations

import base64
import hashlib

import pytest

from services.budget.domain import AfterWithdrawal, after_withdrawal
from services.intake.documents_api import repr_digest
from services.review.documents import content_disposition

pytestmark = pytest.mark.unit


def test_the_file_name_is_offered_exactly_and_with_a_safe_ascii_fallback() -> None:
    assert content_disposition("kostenplan.pdf") == (
        "attachment; filename=\"kostenplan.pdf\"; filename*=UTF-8''kostenplan.pdf"
    )
    tricky = content_disposition('Kostenübersicht "final"\r\n.pdf')
    assert tricky.startswith('attachment; filename="Kosten_bersicht _final___.pdf"; ')
    assert tricky.endswith("filename*=UTF-8''Kosten%C3%BCbersicht%20%22final%22%0D%0A.pdf")
    assert "\r" not in tricky
    assert "\n" not in tricky


def test_the_announced_digest_becomes_an_rfc_9530_repr_digest() -> None:
    data = b"%PDF-1.4\n"
    for algorithm, name in (("sha256", "sha-256"), ("sha512", "sha-512")):
        digest = hashlib.new(algorithm, data)
        expected = f"{name}=:{base64.b64encode(digest.digest()).decode()}:"
        assert repr_digest(f"{algorithm}:{digest.hexdigest()}") == expected


def test_an_incomplete_application_leaves_the_line_when_withdrawn() -> None:
    assert after_withdrawal("incomplete") is AfterWithdrawal.LEAVE_LINE


def test_a_declared_content_digest_becomes_the_announced_form() -> None:
    from services.intake.documents import declared_digest

    data = b"Kostenplan"
    sha256, sha512 = hashlib.sha256(data), hashlib.sha512(data)
    header = f"sha-256=:{base64.b64encode(sha256.digest()).decode()}:"
    assert declared_digest(header) == f"sha256:{sha256.hexdigest()}"
    both = f"{header}, sha-512=:{base64.b64encode(sha512.digest()).decode()}:"
    assert declared_digest(both) == f"sha512:{sha512.hexdigest()}"
    for bad in (None, "", "md5=:AAAA:", "sha-256=:not base64!:", "sha-256=:AAAA:", "sha-256=abc"):
        assert declared_digest(bad) is None, bad
