"""Services stopped (SIGTERM) and started again mid-stream: every application still gets exactly one decision."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import httpx
import pytest

from runtime.kafka import KafkaAccess
from schemas.topics import DECISIONS
from tests.support import (
    ServiceProcesses,
    intake_url,
    open_fiscal_year,
    read_topic,
    sample_application,
    upload_with,
    with_small_attachments,
)

pytestmark = pytest.mark.e2e

APPLICATIONS = 40


async def submit_stream(token: str, count: int, pause: float) -> list[str]:
    ids = []
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(count):
            application = with_small_attachments(sample_application())
            response = await http.post(
                intake_url("/v1/applications"), json=application, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["application_id"])
            await upload_with(http, ids[-1], application, token, intake_url(""))
            await asyncio.sleep(pause)
    return ids


async def test_graceful_restarts_mid_stream_lose_and_duplicate_nothing(
    services: ServiceProcesses, portal_token: str, kafka: KafkaAccess
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    submitting = asyncio.create_task(submit_stream(portal_token, APPLICATIONS, pause=0.05))
    await asyncio.sleep(0.5)
    assert await services.restart("budget", signal.SIGTERM) == 0, "budget exits 0 on SIGTERM"
    assert await services.restart("review", signal.SIGTERM) == 0, "review exits 0 on SIGTERM"
    assert await services.restart("notify", signal.SIGTERM) == 0, "notify exits 0 on SIGTERM"
    ids = set(await submitting)

    def decided_all(seen: list) -> bool:  # type: ignore[type-arg]
        return ids <= {e.subject for e in seen}

    decisions = await read_topic(kafka, DECISIONS, decided_all, timeout=60)
    per_application = Counter(e.subject for e in decisions if e.subject in ids)
    assert set(per_application) == ids, f"undecided: {sorted(ids - set(per_application))}"
    assert all(n == 1 for n in per_application.values()), per_application.most_common(3)
