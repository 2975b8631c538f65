"""A downstream system's consumer of the public decisions topic, egov.decisions.v1.

It reads every decision, validates the envelope and its payload against the contract (the
pydantic models in ``schemas``; the JSON Schemas in ``schemas/json`` say the same), checks
the Ed25519 signature when given the published key, and prints one line per decision. Offsets
are committed only after a batch is handled, so a crash re-reads, never skips: de-duplicate on
the event id. See docs/consumer-guide.md.

The broker authenticates every client: a downstream system connects with SASL (SCRAM-SHA-512) over TLS
as its own read-only principal, which may read the public topics and use consumer groups named
``downstream-*``. The password comes from the environment, never from the command line:

    EGOV_KAFKA_PASSWORD="$(cat .state/secrets/kafka/downstream.password)" \\
    python examples/decision_consumer.py --bootstrap 127.0.0.1:19092 --username downstream \\
        --ca-file .state/secrets/tls/ca.pem \\
        --public-key .state/keys/decision-signing.pub.pem [--from-beginning] [--exit-when-idle 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import json
import os
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import ApplicationDecided
from schemas.topics import DECISIONS

SIGNATURE_ATTRIBUTES = ("signature", "signingkeyid")


# --- signatures: written out here so any language can follow the same steps -------------------


def load_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Key id = "ed25519-" + the first 16 hex digits of SHA-256 over the raw 32-byte public key."""
    keys = {}
    for path in paths:
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise SystemExit(f"{path} is not an Ed25519 public key")
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        keys["ed25519-" + hashlib.sha256(raw).hexdigest()[:16]] = key
    return keys


def signature_status(wire: dict[str, Any], keys: dict[str, Ed25519PublicKey]) -> str:
    """The signed bytes: the envelope as received, minus the two signature attributes, as JSON
    with sorted keys, no whitespace, UTF-8 (non-ASCII characters not escaped)."""
    signature, key_id = wire.get("signature"), wire.get("signingkeyid")
    if not isinstance(signature, str) or not isinstance(key_id, str):
        return "unsigned"
    if key_id not in keys:
        return "unknown_key"
    signed = {k: v for k, v in wire.items() if k not in SIGNATURE_ATTRIBUTES}
    canonical = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        keys[key_id].verify(base64.b64decode(signature, validate=True), canonical)
    except (InvalidSignature, binascii.Error, ValueError):
        return "invalid"
    return "valid"


# --- validation: a tolerant reader --------------------------------------------------------------


def decision_of(envelope: Envelope) -> tuple[ApplicationDecided, list[str]]:
    """The typed decision. Fields added by a newer minor version of the contract are set aside
    (and named), not refused: additive changes must not break a consumer."""
    data = json.loads(json.dumps(envelope.data))
    ignored: list[str] = []
    while True:
        try:
            return envelope.model_copy(update={"data": data}).payload(ApplicationDecided), ignored
        except ValidationError as err:
            extra = [e["loc"] for e in err.errors() if e["type"] == "extra_forbidden"]
            if not extra or len(extra) != err.error_count():
                raise
            for loc in extra:
                _drop(data, loc)
                ignored.append(".".join(map(str, loc)))


def _drop(data: Any, loc: tuple[str | int, ...]) -> None:
    for step in loc[:-1]:
        data = data[step]
    del data[loc[-1]]


def describe(decision: ApplicationDecided, envelope: Envelope, signature: str) -> str:
    euros = f"{decision.amount_cents // 100:,}.{decision.amount_cents % 100:02d} EUR"
    years = ",".join(f"{f.fiscal_year}:{f.amount_cents}" for f in decision.funding) or "-"
    reasons = ",".join(decision.reasons) or "-"
    return (
        f"DECISION {decision.application_id} {decision.decision.value} {euros} years={years} "
        f"reasons={reasons} decided_at={decision.decided_at.isoformat()} signature={signature} id={envelope.id}"
    )


def handle(raw: bytes, keys: dict[str, Ed25519PublicKey] | None, seen: set[str]) -> str | None:
    """One record -> one line to print; raises ValueError for a record that breaks the contract."""
    try:
        envelope = Envelope.from_bytes(raw)
        if envelope.id in seen:
            return None  # redelivered: already handled
        decision, ignored = decision_of(envelope)
    except (ValidationError, TypeError) as err:
        raise ValueError(str(err).splitlines()[0]) from err
    seen.add(envelope.id)
    signature = signature_status(json.loads(raw), keys) if keys is not None else "not_checked"
    line = describe(decision, envelope, signature)
    return line + (f" ignored_fields={','.join(ignored)}" if ignored else "")


async def consume(args: argparse.Namespace) -> int:
    keys = load_keys(args.public_key) if args.public_key else None
    consumer = AIOKafkaConsumer(
        DECISIONS.name,
        bootstrap_servers=args.bootstrap,
        security_protocol="SASL_SSL",
        ssl_context=ssl.create_default_context(cafile=args.ca_file),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=args.username,
        sasl_plain_password=os.environ.get("EGOV_KAFKA_PASSWORD", ""),
        group_id=args.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
    )
    await consumer.start()
    seen: set[str] = set()
    last_record = time.monotonic()
    try:
        while args.exit_when_idle is None or time.monotonic() - last_record < args.exit_when_idle:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    try:
                        line = handle(record.value, keys, seen)
                    except ValueError as err:  # a real consumer parks it in its own dead-letter store
                        print(f"SKIPPED {tp.topic}/{tp.partition}/{record.offset}: {err}", file=sys.stderr)
                        continue
                    if line:
                        print(line, flush=True)
            if batch:
                last_record = time.monotonic()
                await consumer.commit()  # only after the batch is handled: at least once
    finally:
        await consumer.stop()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Print the decisions on egov.decisions.v1.")
    parser.add_argument("--bootstrap", default=os.environ.get("EGOV_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--username", default=os.environ.get("EGOV_KAFKA_USERNAME", "downstream"))
    parser.add_argument(
        "--ca-file", default=os.environ.get("EGOV_KAFKA_CA_FILE"), help="CA of the broker's certificate"
    )
    parser.add_argument("--group-id", default="downstream-decision-consumer-example")
    parser.add_argument("--from-beginning", action="store_true", help="a new group starts at the oldest decision")
    parser.add_argument("--public-key", type=Path, action="append", default=[], help="published PEM key (repeatable)")
    parser.add_argument("--exit-when-idle", type=float, default=None, help="stop after this many quiet seconds")
    return asyncio.run(consume(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
