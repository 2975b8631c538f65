"""Operations end to end: Prometheus scrapes the running services and sees the pipeline move;
the services' logs hold no personal data from the applications."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from runtime.kafka import KafkaAccess
from schemas.topics import DECISIONS
from tests.support import (
    SERVICE_PORTS,
    TEST_SLOT,
    ServiceProcesses,
    intake_url,
    open_fiscal_year,
    read_topic,
    upload_attachments,
)
from tests.support import sample_application as base_application

pytestmark = pytest.mark.e2e

PROMETHEUS_PORT = 19090 + TEST_SLOT
CONTACT_NAME = "Ottilie Datenschutz-Prüfling"
CONTACT_EMAIL = "ottilie.pruefling@beispielgemeinde.example"


def sample_application() -> dict[str, object]:
    application = base_application()
    application["contact"] = {"name": CONTACT_NAME, "email": CONTACT_EMAIL, "phone": "+49 3643 123456"}
    return application


@pytest.fixture(scope="module")
async def prometheus(services: ServiceProcesses, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: deploy/kafka.sh installs Debian's package"
    folder = tmp_path_factory.mktemp("prometheus")
    targets = ", ".join(f'"127.0.0.1:{port}"' for port in SERVICE_PORTS.values())
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: egov\n    static_configs: [{{targets: [{targets}]}}]\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("wb"),
    )
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/-/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def query(url: str, promql: str) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        result = (await http.get(f"{url}/api/v1/query", params={"query": promql})).json()["data"]["result"]
    return sum(float(series["value"][1]) for series in result)


async def eventually(url: str, promql: str, at_least: float, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        value = await query(url, promql)
        if value >= at_least:
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"{promql} = {value}, expected at least {at_least}")


async def test_prometheus_sees_counters_gauges_and_decision_latency_move(
    prometheus: str, portal_token: str, kafka: KafkaAccess
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    before = {
        "decisions": await query(prometheus, 'sum(egov_decisions_total{decision="approved"})'),
        "latency": await query(prometheus, "sum(egov_decision_latency_seconds_count)"),
        "committed": await query(prometheus, 'max(egov_budget_committed_cents{fiscal_year="2027"})'),
        "consumed": await query(prometheus, 'sum(egov_events_consumed_total{outcome="handled"})'),
        "http": await query(prometheus, 'sum(egov_http_requests_total{route="/v1/applications",status="202"})'),
    }
    ids = []
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(3):
            application = sample_application()
            response = await http.post(
                intake_url("/v1/applications"),
                json=application,
                headers={"Authorization": f"Bearer {portal_token}"},
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["application_id"])
            await upload_attachments(ids[-1], application, portal_token)
    await read_topic(kafka, DECISIONS, lambda seen: set(ids) <= {e.subject for e in seen}, timeout=60)
    await eventually(prometheus, 'sum(egov_decisions_total{decision="approved"})', before["decisions"] + 3)
    await eventually(prometheus, "sum(egov_decision_latency_seconds_count)", before["latency"] + 3)
    await eventually(
        prometheus, 'max(egov_budget_committed_cents{fiscal_year="2027"})', before["committed"] + 3 * 9_600_000
    )
    assert await query(prometheus, 'max(egov_budget_pot_cents{fiscal_year="2027"})') == 1_000_000_000
    await eventually(prometheus, 'sum(egov_events_consumed_total{outcome="handled"})', before["consumed"] + 9)
    await eventually(
        prometheus, 'sum(egov_http_requests_total{route="/v1/applications",status="202"})', before["http"] + 3
    )
    latency_sum = await query(prometheus, "sum(egov_decision_latency_seconds_sum)")
    assert latency_sum > 0
    assert await query(prometheus, "min(up)") == 1


async def test_every_services_exposition_passes_promtool_check_metrics(services: ServiceProcesses) -> None:
    """Prometheus' own linter over what each running service exposes (after the pipeline above moved
    the counters): names, types, HELP, units. Any line it prints is a finding."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: deploy/kafka.sh installs Debian's prometheus package"
    async with httpx.AsyncClient(timeout=10) as http:
        for name, port in SERVICE_PORTS.items():
            exposition = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            assert "egov_" in exposition, name
            lint = [promtool, "check", "metrics"]
            checked = subprocess.run(lint, input=exposition, capture_output=True, text=True, timeout=30, check=False)
            assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), name


def test_logs_of_the_run_hold_no_personal_data(services: ServiceProcesses) -> None:
    """Runs after the submissions above (same module): the contact's name and e-mail never reach a log."""
    logs = list(Path(services.log_dir).glob("*.log"))
    assert logs, "the services wrote no logs"
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert '"level"' in text, "logs are JSON lines"
    for secret in (CONTACT_NAME, CONTACT_EMAIL, "Mustermann", "erika.mustermann"):
        assert secret not in text, f"personal data in the logs: {secret}"
