"""A portal that publishes its submissions straight to egov.submissions.v1, signed with its own key.

Intake takes a record only if it carries a Standard Webhooks-style signature by the portal it names
(see README, "Signed submissions on Kafka"). The signing is written out below so a portal in any
language can follow the same steps; any Standard Webhooks library produces the same signature.

    EGOV_PORTAL_SIGNING_SECRET=whsec_... EGOV_KAFKA_PASSWORD=... python examples/portal_producer.py \\
        --bootstrap 127.0.0.1:19092 --username portal.portal-a --ca-file .state/secrets/tls/ca.pem \\
        --portal-id portal-a deploy/demo/application.json
    python examples/portal_producer.py --secret-file /run/secrets/egov-signing ...  # or from a file

The broker also authenticates the portal's producer: SASL (SCRAM-SHA-512) over TLS as the portal's Kafka
principal, which may write the submissions topic and nothing else; its password comes from
EGOV_KAFKA_PASSWORD. The signing secret comes from the environment or a file and is never printed.
During a key rotation give both secrets, space-separated: the record then carries one signature per key.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from pathlib import Path

from pydantic import SecretStr

from runtime.kafka import KafkaAccess, headers_of, make_producer
from schemas.envelope import Envelope
from schemas.events import SubmitApplication
from schemas.topics import SUBMISSIONS

SECRET_ENV = "EGOV_PORTAL_SIGNING_SECRET"  # noqa: S105 - the variable's name, not a secret


# --- signing: written out here so any language can follow the same steps ----------------------


def hmac_key(secret: str) -> bytes:
    """The key is the base64 part of the ``whsec_`` secret, decoded."""
    if not secret.startswith("whsec_"):
        raise SystemExit("the signing secret must start with whsec_")
    return base64.b64decode(secret.removeprefix("whsec_"), validate=True)


def signature_headers(secrets: list[str], envelope_id: str, value: bytes) -> list[tuple[str, bytes]]:
    """HMAC-SHA256 over "{id}.{timestamp}." + the exact value bytes sent; one "v1,<base64>" per secret."""
    timestamp = int(time.time())
    signed = f"{envelope_id}.{timestamp}.".encode() + value
    signatures = [
        "v1," + base64.b64encode(hmac.new(hmac_key(s), signed, hashlib.sha256).digest()).decode() for s in secrets
    ]
    return [
        ("egov-signature-id", envelope_id.encode()),
        ("egov-signature-timestamp", str(timestamp).encode()),
        ("egov-signature", " ".join(signatures).encode()),
    ]


# --- the submission ------------------------------------------------------------------------------


def load_secrets(secret_file: Path | None) -> list[str]:
    raw = secret_file.read_text(encoding="utf-8") if secret_file else os.environ.get(SECRET_ENV, "")
    secrets = raw.split()
    if not secrets:
        raise SystemExit(f"no signing secret: set {SECRET_ENV} or pass --secret-file")
    return secrets


def submission(portal_id: str, submission_id: str, application: dict[str, object]) -> Envelope:
    command = SubmitApplication(portal_id=portal_id, submission_id=submission_id, application=application)
    return Envelope.wrap(command, source=f"/portals/{portal_id}", subject=submission_id, actor=portal_id)


async def publish(kafka: KafkaAccess, envelope: Envelope, secrets: list[str]) -> str:
    value = envelope.to_bytes()  # sign exactly these bytes, and send exactly these bytes
    # The CloudEvents structured-mode headers every topic carries (content-type, ce_type, ce_id).
    headers = [*headers_of(envelope), *signature_headers(secrets, envelope.id, value)]
    producer = make_producer(kafka, f"portal-{envelope.data['portal_id']}")
    await producer.start()
    try:
        sent = await producer.send_and_wait(SUBMISSIONS.name, value, key=envelope.subject.encode(), headers=headers)
    finally:
        await producer.stop()
    return f"{sent.topic}/{sent.partition}/{sent.offset}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("application", type=Path, help="a FundingApplication as JSON")
    parser.add_argument("--bootstrap", default=os.environ.get("EGOV_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument(
        "--username", default=os.environ.get("EGOV_KAFKA_USERNAME"), help="the portal's Kafka principal"
    )
    parser.add_argument("--ca-file", type=Path, default=os.environ.get("EGOV_KAFKA_CA_FILE"), help="the broker's CA")
    parser.add_argument("--portal-id", required=True)
    parser.add_argument("--submission-id", help="the portal's own id for it (default: a new UUID)")
    parser.add_argument("--secret-file", type=Path, help=f"file holding the secret (default: ${SECRET_ENV})")
    args = parser.parse_args(argv)
    secrets = load_secrets(args.secret_file)
    application = json.loads(args.application.read_text(encoding="utf-8"))
    envelope = submission(args.portal_id, args.submission_id or str(uuid.uuid4()), application)
    if not args.username:
        raise SystemExit("no Kafka principal: pass --username or set EGOV_KAFKA_USERNAME")
    password = SecretStr(os.environ.get("EGOV_KAFKA_PASSWORD", ""))
    kafka = KafkaAccess(args.bootstrap, args.username, password, ca_file=args.ca_file)
    where = asyncio.run(publish(kafka, envelope, secrets))
    print(f"submission {envelope.subject} (event {envelope.id}) published at {where}")
    print("intake answers on egov.applications.v1 with application.received or application.rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
