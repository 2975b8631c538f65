"""Portal authentication (bearer token, stored only as its SHA-256) and per-portal rate limits.

Credentials are remembered for ``portal_cache_seconds`` so a submission costs no extra round trip;
a revocation (``python -m services.intake.portals revoke``) takes effect within that time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.credentials import bearer_token, token_digest
from runtime.problems import Problem, bearer_required
from services.intake import store
from services.intake.policy import PortalAccess, RateLimits

if TYPE_CHECKING:
    import asyncpg

    from services.intake.settings import IntakeSettings

CACHE_LIMIT = 10_000
REALM = "egov-intake"


@dataclass
class Portals:
    pool: asyncpg.Pool
    settings: IntakeSettings
    limits: RateLimits = field(default_factory=RateLimits)
    _cache: dict[bytes, tuple[float, PortalAccess | None]] = field(default_factory=dict)

    async def authenticate(self, authorization: str | None) -> PortalAccess:
        """The portal behind the bearer token, after its rate limit; else 401 or 429."""
        token = bearer_token(authorization)
        if token is None:
            raise bearer_required(REALM, "A portal token is required")
        portal = await self.lookup(token)
        if portal is None:
            raise bearer_required(REALM, "The portal token is unknown or revoked", invalid_token=True)
        wait = self.limits.wait_seconds(portal, time.monotonic())
        if wait > 0:
            raise Problem(
                429,
                "request.rate_limited",
                "Too many requests from this portal",
                f"at most {portal.rate_per_second:g} requests per second (burst {portal.burst})",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return portal

    async def lookup(self, token: str) -> PortalAccess | None:
        digest = token_digest(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached and cached[0] > now:
            return cached[1]
        row = await store.portal_by_digest(self.pool, digest)
        portal = self.access(row) if row else None
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()  # bounded memory even when someone sprays random tokens
        self._cache[digest] = (now + self.settings.portal_cache_seconds, portal)
        return portal

    def access(self, row: asyncpg.Record) -> PortalAccess:
        prefixes = row["ags_prefixes"]
        return PortalAccess(
            portal_id=row["portal_id"],
            rate_per_second=row["rate_per_second"] or self.settings.rate_limit_per_second,
            burst=row["rate_burst"] or self.settings.rate_limit_burst,
            ags_prefixes=tuple(prefixes) if prefixes is not None else None,
        )
