"""Ed25519 signatures on envelopes, so a decision can be checked offline with a published key.

The signature covers the canonical form of the envelope: its attributes as they
appear on the wire (``None`` left off), without ``signature`` and
``signingkeyid``, serialised as JSON with sorted keys, no whitespace, UTF-8. Both
travel as CloudEvents extension attributes on the envelope itself, so
``to_bytes``/``from_bytes`` carry them unchanged. Nothing may add attributes to a
signed envelope afterwards.

    python -m runtime.signing [--key PATH]   # print the public key (creates the development key if missing)
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.envelope import Envelope

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

SIGNATURE = "signature"
KEY_ID = "signingkeyid"
SIGNATURE_ATTRIBUTES = (SIGNATURE, KEY_ID)
DEV_KEY_PATH = Path(__file__).resolve().parents[1] / ".state" / "keys" / "decision-signing.pem"


class SignatureStatus(StrEnum):
    VALID = "valid"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    INVALID = "invalid"


def canonical_bytes(envelope: Envelope | Mapping[str, Any]) -> bytes:
    """What is signed. Accepts the model or the envelope as parsed from raw JSON: both give the same bytes."""
    wire = envelope.model_dump(mode="json", exclude_none=True) if isinstance(envelope, Envelope) else dict(envelope)
    unsigned = {k: v for k, v in wire.items() if k not in SIGNATURE_ATTRIBUTES}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key, so keys can rotate and old decisions still verify."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519-" + hashlib.sha256(raw).hexdigest()[:16]


def public_key_path(private_key_path: Path) -> Path:
    """Where the public half is published beside the private key."""
    return private_key_path.with_name(private_key_path.stem + ".pub.pem")


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    def sign(self, envelope: Envelope) -> Envelope:
        """The same envelope with ``signature`` and ``signingkeyid`` added."""
        signature = base64.b64encode(self.private_key.sign(canonical_bytes(envelope))).decode()
        return envelope.model_copy(update={SIGNATURE: signature, KEY_ID: self.key_id})

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def load_signer(path: Path = DEV_KEY_PATH, *, create_if_missing: bool = False) -> Signer:
    """Load the PEM private key; in development create it (and publish its public key) when missing."""
    if not path.is_file():
        if not create_if_missing:
            raise FileNotFoundError(f"signing key {path} is missing")
        _create_key(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds no Ed25519 private key")
    signer = Signer(key)
    published = public_key_path(path)
    if not published.is_file() or published.read_bytes() != signer.public_pem():
        published.write_bytes(signer.public_pem())
    return signer


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: two processes starting at once never overwrite each other's fresh key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as file:
        file.write(pem)


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} holds no Ed25519 public key")
    return key


def load_public_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Key ring by key id: every key that ever signed stays here, so old decisions keep verifying."""
    return {key_id(key): key for key in map(load_public_key, paths)}


def check_signature(envelope: Envelope | Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> SignatureStatus:
    wire = envelope.model_dump(mode="json", exclude_none=True) if isinstance(envelope, Envelope) else envelope
    signature, signer_id = wire.get(SIGNATURE), wire.get(KEY_ID)
    if not isinstance(signature, str) or not isinstance(signer_id, str):
        return SignatureStatus.UNSIGNED
    key = keys.get(signer_id)
    if key is None:
        return SignatureStatus.UNKNOWN_KEY
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical_bytes(wire))
    except (InvalidSignature, binascii.Error, ValueError):
        return SignatureStatus.INVALID
    return SignatureStatus.VALID


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.signing",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 printed (the key is created first if missing), 1 the key could not be read, 2 usage.",
    )
    parser.add_argument("--key", type=Path, default=DEV_KEY_PATH, help="PEM private key (created if missing)")
    args = parser.parse_args(argv)
    signer = load_signer(args.key, create_if_missing=True)
    sys.stdout.write(signer.public_pem().decode())
    print(f"key id {signer.key_id}; published at {public_key_path(args.key)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
