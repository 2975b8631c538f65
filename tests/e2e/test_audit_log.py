"""verify passes on the log a real pipeline run leaves: the four services, the broker, the databases.

A small fiscal year makes a line: one application is served, two wait, and raising the pot
serves them in order. One application is rejected, one is approved from another year. Then the
audit reads the topics alone and finds every guarantee held.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from audit.budget import budget_report
from audit.reader import read_log
from audit.timeline import timeline
from audit.verify import unreadable_records, verify
from runtime.kafka import KafkaAccess
from schemas.envelope import Envelope
from schemas.events import ApplicationWaitlisted
from schemas.topics import BUDGET, DECISIONS
from tests.support import (
    ADMIN_TOKEN,
    REPO,
    SERVICE_PORTS,
    ServiceProcesses,
    as_principal,
    intake_url,
    open_fiscal_year,
    read_topic,
    sample_application,
    upload_with,
)

# It runs the four service processes, and audits the log every other test left: it runs last.
pytestmark = [pytest.mark.e2e, pytest.mark.after_all]

SMALL_YEAR = 2083  # a year no other test opens: its pot and line are this test's alone
GRANT = 9_600_000


async def submit(http: httpx.AsyncClient, token: str, application: dict[str, Any]) -> str:
    response = await http.post(
        intake_url("/v1/applications"), json=application, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 202, response.text
    application_id = str(response.json()["application_id"])
    await upload_with(http, application_id, application, token, intake_url(""))
    return application_id


def small_year_application() -> dict[str, Any]:
    return sample_application(funding=[{"fiscal_year": SMALL_YEAR, "amount_cents": GRANT}])


def below_minimum_grant() -> dict[str, Any]:
    """Valid at intake, ineligible in review: 4,000 EUR is below the minimum grant."""
    return sample_application(
        requested_amount_cents=400_000,
        eligible_cost_cents=500_000,
        total_cost_cents=600_000,
        funding=[{"fiscal_year": 2027, "amount_cents": 400_000}],
    )


async def raise_pot(year: int, pot_cents: int) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.put(
            f"http://127.0.0.1:{SERVICE_PORTS['budget']}/v1/fiscal-years/{year}/pot",
            json={"pot_cents": pot_cents},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert response.status_code == 200, response.text


def decided(ids: list[str]) -> Callable[[list[Envelope]], bool]:
    return lambda seen: {e.subject for e in seen} >= set(ids)


async def run_pipeline(token: str, kafka: KafkaAccess) -> dict[str, str]:
    """Submit, build a line, serve it; returns the application ids by role."""
    assert await open_fiscal_year(SMALL_YEAR, GRANT + 1) == 201
    await open_fiscal_year(2027, 1_000_000_000)
    async with httpx.AsyncClient(timeout=10) as http:
        first = await submit(http, token, small_year_application())
        assert decided([first])(await read_topic(kafka, DECISIONS, decided([first])))
        second = await submit(http, token, small_year_application())
        third = await submit(http, token, small_year_application())
        other_year = await submit(http, token, sample_application())
        rejected = await submit(http, token, below_minimum_grant())

    def waiting(seen: list[Envelope]) -> bool:
        return {e.subject for e in seen if e.is_a(ApplicationWaitlisted)} >= {second, third}

    assert waiting(await read_topic(kafka, BUDGET, waiting)), "the second and third wait for money"
    await raise_pot(SMALL_YEAR, 3 * GRANT)
    apps = {"first": first, "second": second, "third": third, "other_year": other_year, "rejected": rejected}
    decisions = await read_topic(kafka, DECISIONS, decided(list(apps.values())), timeout=60)
    assert {e.subject for e in decisions} >= set(apps.values())
    return apps


async def test_verify_passes_on_the_log_of_a_real_pipeline_run(
    services: ServiceProcesses, portal_token: str, kafka: KafkaAccess
) -> None:
    apps = await run_pipeline(portal_token, kafka)
    await asyncio.sleep(1.0)  # let notices and late budget events land as well

    async with asyncio.timeout(60):
        log = await read_log(kafka)
    # Garbage a portal (or the security tests, playing one) put on the submissions topic is portal input
    # that intake dead-lettered, not a broken guarantee; anything unreadable elsewhere is.
    assert unreadable_records(log.unreadable) == []
    report = verify(log.envelopes)

    ours = set(apps.values())
    assert not [p for p in report.in_progress if p.application_id in ours], "every application reached a decision"
    assert [v for v in report.violations if ours & set(v.applications) or v.fiscal_year == SMALL_YEAR] == []
    # This test runs after the e2e suite on the same broker: the whole log it left must hold.
    # (Tests that write hand-made events use a broker of their own: tests.support.private_broker.)
    assert [(v.check, v.message) for v in report.violations] == []

    budget = budget_report(log.envelopes, SMALL_YEAR)
    line = [(r["application_id"], r["what"]) for r in budget["line"]]
    assert [(a, what.split(" at position")[0].split(":")[0]) for a, what in line] == [
        (apps["second"], "waits"),
        (apps["third"], "waits"),
        (apps["second"], "leaves the line"),
        (apps["third"], "leaves the line"),
    ]
    positions = [int(what.split("position ")[1].split()[0]) for _, what in line[:2]]
    assert positions[0] < positions[1], "positions count the whole line, across years"
    assert budget["final"]["committed_cents"] == 3 * GRANT
    promoted = [r for r in timeline(log.envelopes, apps["second"]) if r["type"] == "budget.reserved.v1"]
    assert [r["cause_type"] for r in promoted] == ["budget.pot_adjusted.v1"]
    await check_the_command(kafka, apps)


async def audit_command(kafka: KafkaAccess, *args: str) -> tuple[int, str]:
    """The command as an operator runs it: its exit code and what it printed (on failure, with its
    stderr, where a long scan also reports progress)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "audit",
        *args,
        "--bootstrap",
        kafka.bootstrap,
        "--json",
        cwd=REPO,
        # As an auditor runs it: the read-only audit principal, its password in the environment.
        env={**os.environ, **as_principal(kafka, "audit").env("EGOV_")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode() if process.returncode == 0 else out.decode() + err.decode()


async def check_the_command(kafka: KafkaAccess, apps: dict[str, str]) -> None:
    code, out = await audit_command(kafka, "verify", *(a for app in apps.values() for a in ("--application", app)))
    assert code == 0, out
    assert json.loads(out)["ok"] is True
    code, out = await audit_command(kafka, "timeline", apps["third"])
    assert code == 0, out
    types = [row["type"] for row in json.loads(out)]
    steps = ["application.received.v1", "application.reviewed.v1", "budget.waitlisted.v1", "application.decided.v1"]
    assert [t for t in types if t in steps] == steps, types  # notices may fall anywhere in between
    code, out = await audit_command(kafka, "budget", str(SMALL_YEAR))
    assert code == 0, out
    assert json.loads(out)["final"]["committed_cents"] == 3 * GRANT
    assert (await audit_command(kafka, "timeline", "TH-EGOV-2083-999999"))[0] == 1
