"""The standards' shape without a broker: record headers, published schemas, request ids, log lines, audit progress."""

from __future__ import annotations

import json
import logging

import jsonschema
import pytest

from audit.__main__ import ProgressLine
from runtime.accesslog import request_id_of
from runtime.kafka import event_headers
from runtime.logs import JsonFormatter, correlated
from runtime.tracing import consuming, current_traceparent
from schemas import events as ev
from schemas.asyncapi import document
from schemas.generate import DIALECT, json_schemas
from schemas.topics import ALL_TOPICS
from tests.unit import factories as f

pytestmark = pytest.mark.unit

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def received() -> dict[str, object]:
    return ev.ApplicationReceived(
        application_id="TH-EGOV-2027-000001",
        portal_id="portal-a",
        received_at=f.RECEIVED_AT,
        category_open=True,
        application=f.funding_application(),
    ).model_dump(mode="json")


def test_records_declare_the_structured_mode_and_carry_the_given_trace() -> None:
    headers = dict(event_headers("de.thueringen.egov.application.received.v1", "e-1", PARENT))
    assert headers["content-type"] == b"application/cloudevents+json; charset=UTF-8"
    assert headers["ce_id"] == b"e-1"
    assert headers["traceparent"] == PARENT.encode()
    assert "traceparent" not in dict(event_headers("t", "e-2", None)), "no trace, no header"


def test_a_consumer_span_continues_the_records_trace() -> None:
    with consuming([("traceparent", PARENT.encode())], consumer="c", topic="t", event_type="x", event_id="e"):
        continued = current_traceparent()
    assert continued is not None
    assert continued.split("-")[1] == PARENT.split("-")[1]
    with consuming([("traceparent", b"garbage")], consumer="c", topic="t", event_type="x", event_id="e"):
        fresh = current_traceparent()
    assert fresh is None or fresh.split("-")[1] != PARENT.split("-")[1]


def test_published_schemas_declare_2020_12_and_are_open() -> None:
    for name, schema in json_schemas().items():
        assert schema["$schema"] == DIALECT, name
        assert '"additionalProperties": false' not in json.dumps(schema), name
        jsonschema.Draft202012Validator.check_schema(schema)
    received_schema = json_schemas()["application.received.v1.json"]
    jsonschema.Draft202012Validator(received_schema).validate({**received(), "added_later": 1})


def test_producers_stay_strict() -> None:
    with pytest.raises(ValueError, match="added_later"):
        ev.ApplicationReceived.model_validate({**received(), "added_later": 1})


def test_asyncapi_names_the_dialect_and_who_receives_each_channel() -> None:
    api = document()
    formats = {
        m["payload"]["schemaFormat"] for m in api["components"]["messages"].values() if "schemaFormat" in m["payload"]
    }
    assert formats == {"application/schema+json;version=2020-12"}
    receives = {
        (o["channel"]["$ref"].split("/")[-1], o["x-reader"])
        for o in api["operations"].values()
        if o["action"] == "receive"
    }
    assert receives == {(t.name, r) for t in ALL_TOPICS for r in t.readers}
    assert receives, "the registry declares readers"


@pytest.mark.parametrize(
    ("given", "kept"),
    [("portal-1234.abc:9_x", True), ("", False), ("a b", False), ("x" * 129, False), ("ä", False)],
)
def test_a_sane_request_id_is_kept_else_one_is_made(given: str, kept: bool) -> None:
    answered = request_id_of([(b"x-request-id", given.encode())])
    assert (answered == given) is kept
    assert 1 <= len(answered) <= 128


def test_log_lines_name_the_application_and_the_event() -> None:
    formatter = JsonFormatter("review")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "event handled", (), None)
    with correlated("TH-EGOV-2027-000001", "event-7"):
        line = json.loads(formatter.format(record))
    assert (line["correlation_id"], line["event_id"], line["service"]) == ("TH-EGOV-2027-000001", "event-7", "review")
    assert "event_id" not in json.loads(formatter.format(record)), "outside the event, no event id"


def test_a_short_audit_scan_prints_no_progress(capsys: pytest.CaptureFixture[str]) -> None:
    progress = ProgressLine(every_seconds=60)
    progress(10, 100)
    assert capsys.readouterr().err == ""
    progress = ProgressLine(every_seconds=0)
    progress(25, 100)
    captured = capsys.readouterr()
    assert "25 of 100 records (25%)" in captured.err
    assert captured.out == "", "stdout keeps only the answer"
