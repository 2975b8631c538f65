"""The window opens: 600 municipalities apply within a few seconds, for 25 M EUR against a pot of 10 M.
Through the whole pipeline (intake over HTTP, the uploads of the announced attachments, review, budget,
notify), the money goes by the complete time (when the last attachment arrived): no application that
holds money has a later place than one told to wait for it."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import issue_portal_token
from tests.support import (
    ServiceProcesses,
    intake_url,
    open_fiscal_year,
    sample_application,
    upload_with,
    with_small_attachments,
)

pytestmark = pytest.mark.e2e

BURST_YEAR = 2084  # a year no other test opens
COUNT = 600
POT = 1_000_000_000  # 10 M EUR
CLIENTS = 64
# 600 municipalities come through many portals, each within its own rate limit (20/s, burst 40):
# one portal per client, so its ten or so applications, three requests each, stay within the burst.
PORTALS = 64


def burst_application(rng: random.Random) -> dict[str, Any]:
    """20,000 to 63,000 EUR each (25 M EUR in all on average), below the four-eyes threshold."""
    requested = rng.randrange(2_000_000, 6_300_000, 100)
    eligible = requested * 100 // 80
    application = sample_application(
        requested_amount_cents=requested,
        eligible_cost_cents=eligible,
        total_cost_cents=eligible,
        funding=[{"fiscal_year": BURST_YEAR, "amount_cents": requested}],
    )
    return with_small_attachments(application)


async def submit_all(tokens: list[str], applications: list[dict[str, Any]]) -> list[tuple[str, datetime]]:
    """(application id, complete time) for each, from CLIENTS concurrent connections spread over the
    portals: each submits, then uploads the announced attachments; the last arrival is the complete time."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for application in applications:
        queue.put_nowait(application)
    receipts: list[tuple[str, datetime]] = []

    async def client(token: str) -> None:
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
            while not queue.empty():
                body = queue.get_nowait()
                response = await http.post(intake_url("/v1/applications"), json=body)
                assert response.status_code == 202, response.text
                app_id = response.json()["application_id"]
                arrivals = await upload_with(http, app_id, body, token, intake_url(""))
                receipts.append((app_id, max(datetime.fromisoformat(a["arrived_at"]) for a in arrivals)))

    await asyncio.gather(*(client(tokens[i % len(tokens)]) for i in range(CLIENTS)))
    return receipts


async def outcomes_settled(conn: asyncpg.Connection, ids: list[str], timeout: float) -> None:
    """Until each application is approved or rejected, or waits having been told its position."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        settled = await conn.fetchval(
            "SELECT count(*) FROM line WHERE application_id = ANY($1)"
            " AND (status IN ('approved', 'rejected') OR (status = 'waiting' AND told_position IS NOT NULL))",
            ids,
        )
        if settled == len(ids):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{settled} of {len(ids)} applications have their budget outcome")


async def notices_sent(dsn: str, ids: list[str], timeout: float) -> None:
    """The burst's mails are sent before the test ends, so its backlog does not slow the tests after it."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        pending = "SELECT count(*) FROM notices WHERE status = 'pending' AND application_id = ANY($1)"
        while await conn.fetchval(pending, ids):
            assert time.monotonic() < deadline, "notify did not work off the burst's notices"
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


@pytest.mark.timeout(540)
async def test_a_burst_of_600_is_funded_in_complete_order(
    services: ServiceProcesses, service_dsns: dict[str, str]
) -> None:
    assert await open_fiscal_year(BURST_YEAR, POT) == 201
    tokens = [await issue_portal_token(service_dsns["intake"], f"burst-portal-{i:02d}") for i in range(PORTALS)]
    rng = random.Random(600)
    applications = [burst_application(rng) for _ in range(COUNT)]
    started = time.monotonic()
    receipts = await submit_all(tokens, applications)
    submitted = time.monotonic() - started
    ids = [app_id for app_id, _ in receipts]
    conn = await asyncpg.connect(service_dsns["budget"])
    try:
        await outcomes_settled(conn, ids, timeout=180)
        decided = time.monotonic() - started
        rows = await conn.fetch(
            "SELECT application_id, place_at, received_at, status, funding FROM line WHERE application_id = ANY($1)"
            " ORDER BY place_at, received_at, application_id",
            ids,
        )
        held = await conn.fetchval(
            "SELECT earmarked_cents + reserved_cents + committed_cents FROM pots WHERE fiscal_year = $1", BURST_YEAR
        )
    finally:
        await conn.close()

    await notices_sent(service_dsns["notify"], ids, timeout=240)
    complete_at = dict(receipts)
    # The place is the arrival time intake answered the last upload with, to the microsecond.
    assert all(r["place_at"] == complete_at[r["application_id"]] for r in rows)
    standing = [r for r in rows if r["status"] != "rejected"]  # ineligible ones leave the line
    assert len(standing) > COUNT * 0.9
    holds_money = [r["status"] in ("approved", "earmarked", "reserved") for r in standing]
    waiting = [r["status"] == "waiting" for r in standing]
    first_waiting = waiting.index(True)
    # Strict: the money went to a prefix of the line order, and everyone after it waits.
    assert all(holds_money[:first_waiting]), "a place before the first waiting one got no money"
    assert not any(holds_money[first_waiting:]), "a later place got money while an earlier one waits"
    assert held <= POT
    print(
        f"\nburst: {COUNT} applications submitted in {submitted:.1f} s ({COUNT / submitted:.0f}/s),"
        f" {first_waiting} funded, {COUNT - first_waiting} waitlisted;"
        f" first submission to last budget outcome: {decided:.1f} s"
    )
