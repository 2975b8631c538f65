"""Show the running system at work: one application from submission to decision.

Run by ``make run`` after ``deploy/stack.sh start``. Issues a portal token,
opens fiscal year 2027 if needed, submits deploy/demo/application.json for a
random Thuringian municipality, uploads the two documents it announces (it is
complete, and goes on to review, once both arrived), and follows it until it is
decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from services.intake.portals import issue

INTAKE = "http://127.0.0.1:8001"
BUDGET = "http://127.0.0.1:8003"
PROMETHEUS = "http://127.0.0.1:9090"
ADMIN = {"Authorization": "Bearer budget-admin-dev-only"}
FINAL = {"approved", "rejected", "withdrawn"}


def demo_application() -> dict[str, Any]:
    application: dict[str, Any] = json.loads((Path(__file__).parent / "application.json").read_text())
    # A fresh municipality each run, so the double-funding rule does not see an earlier demo.
    application["applicant"]["ags"] = f"16{random.randrange(10**6):06d}"
    application["partners"] = []
    return application


def upload_documents(http: httpx.Client, app_id: str, application: dict[str, Any], portal: dict[str, str]) -> None:
    for n, attachment in enumerate(application["attachments"]):
        data = (Path(__file__).parent / attachment["file_name"]).read_bytes()
        headers = {**portal, "Content-Type": attachment["media_type"]}
        uploaded = http.put(f"{INTAKE}/v1/applications/{app_id}/attachments/{n}", content=data, headers=headers)
        uploaded.raise_for_status()
        print(f"uploaded: {attachment['file_name']} ({attachment['size_bytes']} bytes, {attachment['digest'][:19]}…)")


def prometheus_series(http: httpx.Client, promql: str) -> list[dict[str, Any]]:
    """Prometheus scrapes every 5 s: give a freshly started one a moment to have the series."""
    for _ in range(30):
        with contextlib.suppress(httpx.HTTPError):
            result: list[dict[str, Any]] = http.get(f"{PROMETHEUS}/api/v1/query", params={"query": promql}).json()[
                "data"
            ]["result"]
            if result:
                return result
        time.sleep(0.5)
    return []


def main() -> int:
    token = asyncio.run(issue("demo-portal")).token
    portal = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10) as http:
        opened = http.post(
            f"{BUDGET}/v1/fiscal-years", json={"fiscal_year": 2027, "pot_cents": 1_000_000_000}, headers=ADMIN
        )
        print(f"fiscal year 2027: {'opened with 10,000,000.00 EUR' if opened.status_code == 201 else 'already open'}")
        application = demo_application()
        receipt = http.post(f"{INTAKE}/v1/applications", json=application, headers=portal)
        receipt.raise_for_status()
        app_id = receipt.json()["application_id"]
        print(f"submitted: {receipt.status_code} {json.dumps(receipt.json(), ensure_ascii=False)}")
        upload_documents(http, app_id, application, portal)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            view = http.get(f"{INTAKE}/v1/applications/{app_id}", headers=portal).json()
            if view["status"] in FINAL and any(t["type"].startswith("notification") for t in view["timeline"]):
                break
            time.sleep(0.5)
        print(f"\n{app_id}: {view['status']}")
        for entry in view["timeline"]:
            extra = {k: v for k, v in entry.items() if k not in ("type", "status", "time")}
            print(
                f"  {entry['time']}  {entry['type']:<28} {entry['status']:<14} {json.dumps(extra, ensure_ascii=False)}"
            )
        pots = http.get(f"{BUDGET}/v1/fiscal-years", headers=ADMIN).json()
        print(f"\npots: {json.dumps(pots)}")
        for series in prometheus_series(http, "sum by (job) (egov_events_consumed_total)"):
            print(f"prometheus: events consumed by {series['metric'].get('job')}: {series['value'][1]}")
    return 0 if view["status"] in FINAL else 1


if __name__ == "__main__":
    sys.exit(main())
