"""Bearer credentials for principals (portals, caseworkers): minted once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets


def new_token(prefix: str) -> str:
    """A fresh token; the prefix (``egp_``, ``egc_``) tells a leaked one's kind at a glance."""
    return f"{prefix}{secrets.token_urlsafe(32)}"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive); else None."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_digest(token: str) -> bytes:
    """What the database keeps instead of the token."""
    return hashlib.sha256(token.encode()).digest()
