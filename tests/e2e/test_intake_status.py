"""Intake with the whole pipeline: what the receipt and first notice say, the status view as the
application moves to its decision, withdrawal until (and not after) the decision, and the view rebuilt
from the topics."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from email.message import EmailMessage, Message
from typing import Any, cast

import asyncpg
import httpx
import pytest

from tests.support import (
    ADMIN_TOKEN,
    REPO,
    SERVICE_PORTS,
    ServiceProcesses,
    SmtpSink,
    intake_url,
    open_fiscal_year,
    sample_application,
    upload_with,
)

pytestmark = pytest.mark.e2e

OPEN_NOTICE = "Ihr Antrag wird nun geprüft."
PAUSED_NOTICE = "Der Fördergegenstand ist derzeit ausgesetzt."


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def submit(token: str, **project: Any) -> dict[str, Any]:
    """Submit, and upload what it announces: complete, so it goes on to review."""
    application = sample_application(**project)
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(intake_url("/v1/applications"), json=application, headers=auth(token))
        assert response.status_code == 202, response.text
        await upload_with(http, response.json()["application_id"], application, token, intake_url(""))
    return dict(response.json())


async def status_when(token: str, app_id: str, done: Any, timeout: float = 30) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(int(timeout * 10)):
            status = dict((await http.get(intake_url(f"/v1/applications/{app_id}"), headers=auth(token))).json())
            if done(status):
                return status
            await asyncio.sleep(0.1)
    raise AssertionError(f"{app_id} never reached the expected state: {status}")


def text_of(message: Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    return str(cast(EmailMessage, part).get_content())


async def receipt_mail(sink: SmtpSink, app_id: str) -> str:
    for _ in range(300):
        receipts = [m for m in sink.for_application(app_id) if str(m["Subject"]).startswith("Eingangsbestätigung")]
        if receipts:
            return text_of(receipts[0])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no receipt mail for {app_id}")


async def test_the_receipt_and_the_first_notice_say_whether_the_category_is_open_or_paused(
    services: ServiceProcesses, portal_token: str, smtp_sink: SmtpSink
) -> None:
    paused = await submit(portal_token, category="e_akte")
    assert paused["category_open"] is False
    assert "paused" in paused["category_notice"]
    opened = await submit(portal_token, category="dms_eservices")
    assert opened["category_open"] is True
    assert opened["category_notice"] is None

    paused_mail = await receipt_mail(smtp_sink, paused["application_id"])
    assert PAUSED_NOTICE in paused_mail
    assert OPEN_NOTICE not in paused_mail
    assert OPEN_NOTICE in await receipt_mail(smtp_sink, opened["application_id"])


async def test_a_category_paused_by_a_budget_administrator_is_paused_in_the_receipt_and_its_mail(
    services: ServiceProcesses, portal_token: str, smtp_sink: SmtpSink, service_dsns: dict[str, str]
) -> None:
    category = "schulung"  # open in the rules file

    async def set_category(action: str) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                f"http://127.0.0.1:{SERVICE_PORTS['budget']}/v1/categories/{category}/{action}",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
        assert response.status_code == 200, response.text

    async def intake_sees_paused(expected: bool) -> None:
        conn = await asyncpg.connect(service_dsns["intake"])
        try:
            for _ in range(300):
                found = await conn.fetchval("SELECT true FROM paused_categories WHERE category = $1", category)
                if bool(found) is expected:
                    return
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        raise AssertionError(f"intake never saw {category} {'paused' if expected else 'resumed'}")

    await set_category("pause")
    try:
        await intake_sees_paused(True)
        receipt = await submit(portal_token, category=category)
        assert receipt["category_open"] is False
        assert "paused" in receipt["category_notice"]
        mail = await receipt_mail(smtp_sink, receipt["application_id"])
        assert PAUSED_NOTICE in mail
        assert OPEN_NOTICE not in mail
    finally:
        await set_category("resume")
        await intake_sees_paused(False)
    assert (await submit(portal_token, category=category))["category_open"] is True


async def test_the_status_follows_the_application_to_its_decision_and_then_refuses_withdrawal(
    services: ServiceProcesses, portal_token: str
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    app_id = (await submit(portal_token))["application_id"]

    def settled(status: dict[str, Any]) -> bool:
        types = [t["type"] for t in status["timeline"]]
        return status["status"] == "approved" and "notification.delivered.v1" in types

    status = await status_when(portal_token, app_id, settled)
    steps = [t["type"] for t in status["timeline"] if not t["type"].startswith("notification.")]
    assert steps[:4] == [
        "application.received.v1",
        "application.completed.v1",
        "application.reviewed.v1",
        "budget.reserved.v1",
    ]
    assert "application.decided.v1" in steps
    assert status["timeline"][0]["status"] == "received"
    decided = next(t for t in status["timeline"] if t["type"] == "application.decided.v1")
    assert decided["detail"]["amount_cents"] == 9_600_000
    assert "mustermann" not in json.dumps(status).lower(), "public fields only: no contact person"

    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.post(intake_url(f"/v1/applications/{app_id}/withdrawal"), headers=auth(portal_token))
    assert (refused.status_code, refused.json()["code"]) == (409, "application.already_decided")


async def test_a_waiting_application_can_be_withdrawn_and_the_pipeline_hears_of_it(
    services: ServiceProcesses, portal_token: str, service_dsns: dict[str, str], smtp_sink: SmtpSink
) -> None:
    app_id = (await submit(portal_token, category="e_akte"))["application_id"]  # paused: it waits
    await status_when(portal_token, app_id, lambda s: s["status"] == "waitlisted")
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            intake_url(f"/v1/applications/{app_id}/withdrawal"),
            json={"reason": "Vorhaben wird aus Eigenmitteln finanziert"},
            headers=auth(portal_token),
        )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "withdrawn"
    status = await status_when(
        portal_token, app_id, lambda s: "application.withdrawn.v1" in [t["type"] for t in s["timeline"]]
    )
    assert status["status"] == "withdrawn"

    conn = await asyncpg.connect(service_dsns["budget"])
    try:
        for _ in range(100):
            line = await conn.fetchval("SELECT status FROM line WHERE application_id = $1", app_id)
            if line == "withdrawn":
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert line == "withdrawn", "budget took the application out of the line"

    for _ in range(300):
        withdrawals = [m for m in smtp_sink.for_application(app_id) if m["X-Notice-Type"] == "withdrawn"]
        if withdrawals:
            break
        await asyncio.sleep(0.1)
    [mail] = withdrawals
    assert "freigegeben" not in text_of(mail), "nothing was reserved for a waiting application"


async def test_the_status_view_is_rebuilt_from_the_topics(
    services: ServiceProcesses, portal_token: str, service_dsns: dict[str, str]
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    app_id = (await submit(portal_token))["application_id"]
    await status_when(portal_token, app_id, lambda s: s["status"] == "approved")
    async with httpx.AsyncClient(timeout=10) as http:
        page = (
            await http.get(intake_url("/v1/applications"), params={"limit": 200}, headers=auth(portal_token))
        ).json()
        before = {}
        for item in page["items"]:
            url = intake_url(f"/v1/applications/{item['application_id']}")
            before[item["application_id"]] = (await http.get(url, headers=auth(portal_token))).json()
    assert app_id in before

    await services.stop("intake")
    env = services.env("intake")
    done = subprocess.run(
        [sys.executable, "-m", "services.intake.statusview", "rebuild"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    conn = await asyncpg.connect(service_dsns["intake"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM application_status") == 0
    finally:
        await conn.close()
    services.start("intake")
    await services.wait_ready("intake")  # ready only once the view caught up with every topic

    async with httpx.AsyncClient(timeout=10) as http:
        for rebuilt_id, old in before.items():
            new = (await http.get(intake_url(f"/v1/applications/{rebuilt_id}"), headers=auth(portal_token))).json()
            assert {k: v for k, v in new.items() if k != "timeline"} == {
                k: v for k, v in old.items() if k != "timeline"
            }
            missing = [t for t in old["timeline"] if t not in new["timeline"]]
            assert missing == [], f"{rebuilt_id} lost timeline entries in the rebuild"
