"""The shared edge pieces: refusals mapped to HTTP in one place, bearer parsing, metrics from what committed."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from runtime.credentials import bearer_token
from runtime.metrics import count_committed
from runtime.outbox import Outgoing
from runtime.problems import REFUSAL_STATUS, install_problem_handlers
from runtime.refusals import Refusal, Refused
from schemas import events as ev
from schemas.envelope import Envelope
from schemas.topics import APPLICATIONS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("kind", list(Refusal))
async def test_a_refusal_becomes_a_problem_with_the_status_of_its_kind(kind: Refusal) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/cases/{case}")
    async def act(case: str) -> None:
        raise Refused(kind, "case.refused", f"{case} cannot be done")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        answer = await http.post("/cases/c-1")
    assert answer.status_code == REFUSAL_STATUS[kind]
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "case.refused"
    assert answer.json()["title"] == "c-1 cannot be done"


def test_metrics_count_each_committed_event_of_their_type_once() -> None:
    seen: list[str] = []
    counted = count_committed({ev.ApplicationWithdrawn: lambda p: seen.append(p.application_id)})
    withdrawn = ev.ApplicationWithdrawn(application_id="TH-EGOV-2099-000001", portal_id="portal-a")
    rejected = ev.ApplicationRejected(portal_id="portal-a", submission_id="s-1", errors=[])
    out = [
        Outgoing(APPLICATIONS, "k", Envelope.wrap(withdrawn, source="/t", subject="TH-EGOV-2099-000001")),
        Outgoing(APPLICATIONS, "k", Envelope.wrap(rejected, source="/t", subject="s-1")),
    ]
    counted(out)
    assert seen == ["TH-EGOV-2099-000001"]


def test_a_consumed_event_type_from_outside_cannot_mint_metric_series() -> None:
    from runtime.consumer import type_label

    assert type_label(ev.ApplicationWithdrawn.wire_type()) == ev.ApplicationWithdrawn.wire_type()
    assert type_label("attacker.chosen.type.v1") == "unknown"
