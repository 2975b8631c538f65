"""A JSON object that names a member twice is refused wherever outside input is read, with the pointer
of the repeat: intake's bodies and submitted records (runtime.strict_json) and every JSON body FastAPI
reads for review and budget (runtime.problems.StrictJsonRoute)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from runtime.consumer import Delivered
from runtime.problems import install_problem_handlers
from runtime.strict_json import DuplicateMember, loads
from schemas.envelope import Envelope
from schemas.events import SubmitApplication
from services.intake.handlers import repeated_member

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "pointer"),
    [
        ('{"a": 1, "a": 2}', "/a"),
        ('{"applicant": {"name": "x", "ags": "1", "name": "y"}}', "/applicant/name"),
        ('{"partners": [{"ags": "1"}, {"ags": "2", "ags": "3"}]}', "/partners/1/ags"),
        ('{"a/b": {"c~d": 1, "c~d": 2}}', "/a~1b/c~0d"),
        ('[{"x": {"y": 1, "y": 1}}, {"z": 1, "z": 1}]', "/0/x/y"),  # the first in document order
        ('{"outer": {"k": 1, "k": 2}, "outer": 3}', "/outer"),  # an object's own repeat before its children's
    ],
)
def test_a_repeated_member_is_refused_with_its_pointer(text: str, pointer: str) -> None:
    with pytest.raises(DuplicateMember) as refused:
        loads(text)
    assert refused.value.pointer == pointer


def test_a_document_without_repeats_reads_as_json_does() -> None:
    text = '{"a": [1, {"b": null, "c": "ü"}], "d": {"a": 1}}'
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


class Pot(BaseModel):
    fiscal_year: int
    pot_cents: int


def strict_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)  # as review and budget call it, before their routes

    @app.post("/v1/fiscal-years")
    async def open_year(command: Pot) -> dict[str, Any]:
        return command.model_dump()

    return app


def test_a_framework_read_body_naming_a_member_twice_is_a_422_problem_with_the_pointer() -> None:
    client = TestClient(strict_app())
    headers = {"Content-Type": "application/json"}
    fine = client.post("/v1/fiscal-years", content='{"fiscal_year": 2027, "pot_cents": 5}', headers=headers)
    assert (fine.status_code, fine.json()) == (200, {"fiscal_year": 2027, "pot_cents": 5})
    twice = '{"fiscal_year": 2027, "pot_cents": 5, "pot_cents": 500000}'
    answer = client.post("/v1/fiscal-years", content=twice, headers=headers)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"] == [
        {
            "code": "body.duplicate_key",
            "pointer": "/pot_cents",
            "detail": "the member 'pot_cents' appears twice in one object",
        }
    ]


def delivered(value: bytes) -> Delivered:
    record = SimpleNamespace(value=value, headers=[], timestamp=0, topic="egov.submissions.v1", partition=0)
    return Delivered.of(record)  # the fields of a ConsumerRecord that Delivered reads


def test_a_submitted_record_naming_a_member_twice_is_refused_with_the_pointer_in_the_application() -> None:
    command = SubmitApplication(portal_id="p", submission_id="s-1", application={"partners": [], "title": "t"})
    record = Envelope.wrap(command, source="/portal/p", subject="s-1").to_bytes()
    assert repeated_member(delivered(record)) is None
    inside = record.replace(b'"title":"t"', b'"title":"t","title":"u"')
    outside = record.replace(b'"submission_id":"s-1"', b'"submission_id":"s-1","submission_id":"s-2"')
    assert inside != record
    assert outside != record
    problems = repeated_member(delivered(inside))
    assert problems is not None
    assert [(p.code, p.pointer) for p in problems] == [("body.duplicate_key", "/title")]
    problems = repeated_member(delivered(outside))
    assert problems is not None
    assert [(p.code, p.pointer) for p in problems] == [("body.duplicate_key", "/submission_id")]
