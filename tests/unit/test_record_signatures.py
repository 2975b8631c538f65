"""Standard Webhooks-style record signatures: what signs, what verifies, and everything that must not."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from runtime.record_signatures import (
    SIGNATURE,
    SIGNATURE_HEADERS,
    SIGNATURE_ID,
    SIGNATURE_TIMESTAMP,
    Verdict,
    decode_secret,
    encode_secret,
    new_secret,
    sign,
    signature_headers,
    verify,
)
from schemas.topics import SUBMISSIONS

pytestmark = pytest.mark.unit

NOW = 1_800_000_000
VALUE = b'{"id":"evt-1","data":{"portal_id":"portal-a"}}'
KEY, OTHER = decode_secret(new_secret()), decode_secret(new_secret())


def check(
    headers: list[tuple[str, bytes]], keys: tuple[bytes, ...] = (KEY,), value: bytes = VALUE, now: float = NOW
) -> Verdict:
    return verify(keys, headers, value, now=now, tolerance_seconds=300, expected_id="evt-1")


def test_the_signature_is_standard_webhooks_hmac_over_id_timestamp_and_the_exact_bytes() -> None:
    expected = base64.b64encode(hmac.new(KEY, b"evt-1.1800000000." + VALUE, hashlib.sha256).digest()).decode()
    assert sign(KEY, "evt-1", NOW, VALUE) == f"v1,{expected}"
    assert dict(signature_headers([KEY], "evt-1", VALUE, now=NOW)) == {
        SIGNATURE_ID: b"evt-1",
        SIGNATURE_TIMESTAMP: b"1800000000",
        SIGNATURE: f"v1,{expected}".encode(),
    }


def test_a_signed_record_verifies_within_the_window_on_either_side() -> None:
    headers = signature_headers([KEY], "evt-1", VALUE, now=NOW)
    assert check(headers) is Verdict.VALID
    assert check(headers, now=NOW + 300) is Verdict.VALID
    assert check(headers, now=NOW - 300) is Verdict.VALID
    assert check(headers, now=NOW + 301) is Verdict.STALE
    assert check(headers, now=NOW - 301) is Verdict.STALE, "a timestamp in the future is refused too"


def test_during_a_rotation_either_key_verifies_and_a_producer_may_sign_with_both() -> None:
    assert check(signature_headers([OTHER], "evt-1", VALUE, now=NOW), keys=(KEY, OTHER)) is Verdict.VALID
    both = signature_headers([KEY, OTHER], "evt-1", VALUE, now=NOW)
    assert len(dict(both)[SIGNATURE].split()) == 2
    assert check(both, keys=(OTHER,)) is Verdict.VALID
    assert check(both, keys=(KEY,)) is Verdict.VALID


def test_another_key_a_changed_byte_another_id_or_a_changed_timestamp_is_invalid() -> None:
    headers = signature_headers([KEY], "evt-1", VALUE, now=NOW)
    assert check(headers, keys=(OTHER,)) is Verdict.INVALID
    assert check(headers, keys=()) is Verdict.INVALID, "a portal without keys verifies nothing"
    assert check(headers, value=VALUE.replace(b"portal-a", b"portal-b")) is Verdict.INVALID
    assert check(headers, value=VALUE + b" ") is Verdict.INVALID
    elsewhere = signature_headers([KEY], "evt-2", VALUE, now=NOW)
    assert check(elsewhere) is Verdict.INVALID, "a signature for another envelope id"
    retimed = [(k, b"1800000100" if k == SIGNATURE_TIMESTAMP else v) for k, v in headers]
    assert check(retimed) is Verdict.INVALID, "an old signature cannot be made fresh"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(SIGNATURE_ID, b"evt-1"), (SIGNATURE_TIMESTAMP, b"1800000000")],
        [(SIGNATURE_TIMESTAMP, b"1800000000"), (SIGNATURE, b"v1,AAAA")],
    ],
)
def test_missing_headers_are_unsigned(headers: list[tuple[str, bytes]]) -> None:
    assert check(headers) is Verdict.UNSIGNED


def test_malformed_or_repeated_headers_are_invalid() -> None:
    good = signature_headers([KEY], "evt-1", VALUE, now=NOW)
    assert check([*good, (SIGNATURE_ID, b"evt-1")]) is Verdict.INVALID, "a repeated header is ambiguous"
    signature = dict(good)[SIGNATURE]
    for timestamp in (b"-1", b"1.8e9", b"", b"\xff", "\uff11\uff18".encode(), b"1" * 13):
        assert check([(SIGNATURE_ID, b"evt-1"), (SIGNATURE_TIMESTAMP, timestamp), (SIGNATURE, signature)]) is (
            Verdict.INVALID
        ), timestamp
    for bad in (b"", b"v2," + signature[3:], signature[3:], b"v1,not base64", b"\xff"):
        assert check([*good[:2], (SIGNATURE, bad)]) is Verdict.INVALID, bad


def test_secrets_round_trip_and_bad_ones_are_refused() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert encode_secret(decode_secret(secret)) == secret
    assert len(decode_secret(secret)) == 32
    for bad in ("", "whsec_", "whsec_not*base64", "egp_" + secret[6:], "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="signing secret"):
            decode_secret(bad)


def test_the_submissions_contract_names_the_headers_intake_checks() -> None:
    assert tuple(name for name, _ in SUBMISSIONS.required_headers) == SIGNATURE_HEADERS
    assert SUBMISSIONS.config["message.timestamp.type"] == "LogAppendTime", (
        "the broker stamps what the age is judged by"
    )
