"""The portal credential commands keep the signing keys intake verifies with: issue, rotate, retire, revoke."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from runtime.record_signatures import decode_secret
from services.intake import store
from services.intake.portals import issue, retire_old_signing_keys, revoke, rotate_signing_key
from tests.support import TEST_SLOT, fresh_database

pytestmark = pytest.mark.integration


async def test_issue_rotate_retire_and_revoke_change_which_keys_verify(
    pg_admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = await fresh_database(pg_admin_dsn, f"egov_test{TEST_SLOT}_portal_keys")
    monkeypatch.setenv("INTAKE_DATABASE_URL", dsn)
    conn = await asyncpg.connect(dsn)
    try:

        async def active() -> list[bytes]:
            return await store.signing_keys(conn, "portal-k")

        first = await issue("portal-k")
        assert first.token.startswith("egp_")
        assert first.signing_secret.startswith("whsec_")
        assert await active() == [decode_secret(first.signing_secret)]
        stored = await conn.fetchval("SELECT token_sha256 FROM portals WHERE portal_id = 'portal-k'")
        assert first.token.encode() not in bytes(stored), "the token is still kept only as a hash"

        second = await rotate_signing_key("portal-k", timedelta(hours=1))
        assert second is not None
        assert await active() == [decode_secret(second), decode_secret(first.signing_secret)], "both, newest first"
        assert await retire_old_signing_keys("portal-k") == 1
        assert await active() == [decode_secret(second)]

        third = await rotate_signing_key("portal-k", timedelta(0))  # a leaked key: the old one stops at once
        assert third is not None
        assert await active() == [decode_secret(third)]

        again = await issue("portal-k")  # issuing anew replaces every credential
        assert await active() == [decode_secret(again.signing_secret)]
        assert await rotate_signing_key("no-such-portal", timedelta(hours=1)) is None

        assert await revoke("portal-k")
        assert await active() == [], "a revoked portal's signatures stop verifying"
    finally:
        await conn.close()
