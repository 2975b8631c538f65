"""Intake's watermarks through the real stack: budget moves its frontier on them, every other reader of
the applications topic knows them and passes them by, and a decision no longer waits for an assumed
lateness bound."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from runtime.kafka import KafkaAccess
from schemas.events import IntakeWatermark
from schemas.topics import APPLICATIONS, DECISIONS
from tests.support import SERVICE_PORTS, intake_url, open_fiscal_year, read_topic, sample_application

pytestmark = pytest.mark.e2e

CONSUMED = re.compile(r"^egov_events_consumed_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$", re.MULTILINE)


async def watermark_outcomes(service: str) -> dict[str, float]:
    """What the service's consumers made of the watermark records they read, by outcome."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{SERVICE_PORTS[service]}/metrics")).text
    outcomes: dict[str, float] = {}
    for m in CONSUMED.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if labels.get("type") == IntakeWatermark.wire_type() and labels.get("topic") == APPLICATIONS.name:
            outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0) + float(m["value"])
    return outcomes


async def test_watermarks_move_budget_and_every_other_reader_passes_them_by(
    services: object, portal_token: str, kafka: KafkaAccess
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    auth = {"Authorization": f"Bearer {portal_token}"}
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        receipt = await http.post(intake_url("/v1/applications"), json=sample_application(), headers=auth)
    assert receipt.status_code == 202, receipt.text
    app_id = receipt.json()["application_id"]
    await read_topic(kafka, DECISIONS, lambda seen: any(e.subject == app_id for e in seen), timeout=60)
    print(f"submit -> decision: {time.monotonic() - started:.2f} s")

    assert (await watermark_outcomes("budget")).get("handled", 0) > 0
    for reader in ("intake", "review", "notify"):
        outcomes = await watermark_outcomes(reader)
        assert outcomes.get("ignored", 0) > 0, f"{reader} read no watermark: {outcomes}"
        assert set(outcomes) == {"ignored"}, f"{reader} did more than pass them by: {outcomes}"
