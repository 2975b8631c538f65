"""Our topics read by the standards' own tools, and one application followed through logs and traces.

After one application has gone through the real services: every record on every topic that has
records is read with the official CloudEvents SDK (structured mode) and gets every attribute right;
every live event validates against the frozen contract/v1 JSON Schemas with a 2020-12 validator;
the trace id the portal sent with its request is on every record of that application and in the
log lines of every service that handled it; and the access log names the request.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, TypeAlias

import httpx
import jsonschema
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from cloudevents.kafka import KafkaMessage, from_structured

from runtime.kafka import KafkaAccess, make_reader
from schemas.envelope import Envelope
from schemas.events import ApplicationDecided, NotificationDelivered
from schemas.topics import ALL_TOPICS, APPLICATIONS, BUDGET, DECISIONS, NOTIFICATIONS, REVIEWS, Topic
from tests.e2e.test_pipeline import wait_for_mails
from tests.support import SmtpSink, intake_url, open_fiscal_year, read_topic, sample_application, upload_with

pytestmark = pytest.mark.e2e

CONTRACT = Path(__file__).resolve().parents[2] / "schemas" / "contract" / "v1" / "json"
STRUCTURED = b"application/cloudevents+json; charset=UTF-8"
Record: TypeAlias = "ConsumerRecord[Any, Any]"


async def records_of(kafka: KafkaAccess, topic: Topic) -> list[Record]:
    """Every record on the topic now, headers and all, read to the end offsets."""
    reader = make_reader(kafka, "test-standards")
    await reader.start()
    try:
        await reader._client.force_metadata_update()
        partitions = [TopicPartition(topic.name, p) for p in reader.partitions_for_topic(topic.name) or ()]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        records: list[Record] = []
        while [tp for tp, end in ends.items() if await reader.position(tp) < end]:
            for batch in (await reader.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await reader.stop()


def validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((CONTRACT / name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft202012Validator, f"{name} declares {schema.get('$schema')}"
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def check_with_sdk(record: Record) -> None:
    """The official SDK reads the record as a structured-mode CloudEvent with our attributes."""
    headers = dict(record.headers)
    assert headers.get("content-type") == STRUCTURED, f"{record.topic}/{record.offset}: {headers}"
    event = from_structured(KafkaMessage(headers=headers, key=record.key, value=record.value))
    envelope: dict[str, Any] = json.loads(record.value)
    assert event.data == envelope["data"]
    assert event["partitionkey"] == record.key
    for name, value in envelope.items():
        if name == "data":
            continue
        if name == "datacontenttype":
            # SDK v1's from_structured takes datacontenttype from the Kafka content-type header (the
            # event format's type), the mirror of its to_structured moving it there (sdk-python#295).
            assert value == "application/json"
            continue
        assert event[name] == value, f"{record.topic}: attribute {name}"


async def test_live_events_meet_cloudevents_json_schema_and_carry_one_trace(
    services: object, portal_token: str, kafka: KafkaAccess, smtp_sink: SmtpSink, log_dir: Path
) -> None:
    await open_fiscal_year(2027, 1_000_000_000)
    trace_id = uuid.uuid4().hex
    request_id = f"portal-{uuid.uuid4().hex[:12]}"
    headers = {
        "Authorization": f"Bearer {portal_token}",
        "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
        "X-Request-Id": request_id,
    }
    async with httpx.AsyncClient(timeout=10) as http:
        application = sample_application()
        receipt = await http.post(intake_url("/v1/applications"), json=application, headers=headers)
        refused = await http.get(intake_url("/v1/applications/x"), headers={"X-Request-Id": "bad id; drop table"})
        assert receipt.status_code == 202, receipt.text
        # The uploads belong to the same trace: the portal's one piece of work.
        trace = {"traceparent": headers["traceparent"]}
        await upload_with(http, receipt.json()["application_id"], application, portal_token, intake_url(""), trace)
    assert receipt.headers["x-request-id"] == request_id, "a sane request id is kept and answered"
    assert refused.headers["x-request-id"] not in ("", "bad id; drop table"), "an insane one is replaced"
    app_id: str = receipt.json()["application_id"]

    def delivered(seen: list[Envelope]) -> bool:
        return sum(e.subject == app_id and e.is_a(NotificationDelivered) for e in seen) >= 2

    await read_topic(
        kafka, DECISIONS, lambda seen: any(e.subject == app_id and e.is_a(ApplicationDecided) for e in seen)
    )
    await read_topic(kafka, NOTIFICATIONS, delivered, timeout=90)
    await wait_for_mails(smtp_sink, app_id, 2)

    envelope_schema = validator("envelope.json")
    data_schemas = {p.name: validator(p.name) for p in CONTRACT.glob("*.json") if p.name != "envelope.json"}
    on_topics: dict[str, list[Record]] = {topic.name: await records_of(kafka, topic) for topic in ALL_TOPICS}
    seen_types: set[str] = set()
    traced: dict[str, set[str]] = {}
    for name, records in on_topics.items():
        for record in records:
            if name.endswith(".deadletter.v1"):
                continue  # a dead letter is its original's bytes and headers (not one in this run)
            check_with_sdk(record)
            envelope = json.loads(record.value)
            envelope_schema.validate(envelope)
            event_type = envelope["type"].removeprefix("de.thueringen.egov.")
            if f"{event_type}.json" in data_schemas:  # a type added after v1 is not in its contract
                data_schemas[f"{event_type}.json"].validate(envelope["data"])
                seen_types.add(event_type)
            if envelope["correlationid"] == app_id:
                parent = dict(record.headers).get("traceparent", b"").decode()
                traced.setdefault(name, set()).add(parent.split("-")[1] if parent else "")
    assert {
        "application.received.v1",
        "application.reviewed.v1",
        "budget.reserved.v1",
        "budget.committed.v1",
        "budget.fiscal_year_opened.v1",
        "application.decided.v1",
        "notification.delivered.v1",
    } <= seen_types

    # One trace: every record of the application, on every topic it crossed, names the portal's trace.
    for topic in (APPLICATIONS, REVIEWS, BUDGET, DECISIONS, NOTIFICATIONS):
        assert traced.get(topic.name) == {trace_id}, f"{topic.name}: {traced.get(topic.name)}"

    lines = {name: log_lines(log_dir / f"{name}.log") for name in ("intake", "review", "budget", "notify")}
    access = [line for line in lines["intake"] if line.get("request_id") == request_id and "route" in line]
    assert [(a["method"], a["route"], a["status"]) for a in access] == [("POST", "/v1/applications", 202)]
    assert access[0]["trace_id"] == trace_id
    assert access[0]["duration_ms"] >= 0
    assert portal_token not in json.dumps(lines["intake"]), "no token in any log line"
    for service in ("review", "budget", "notify"):
        handled = [
            line for line in lines[service] if line.get("correlation_id") == app_id and line.get("outcome") == "handled"
        ]
        assert handled, f"{service} logged no handled event of {app_id}"
        assert all(line.get("event_id") and line.get("event_type") for line in handled)
        assert {line.get("trace_id") for line in handled} == {trace_id}, f"{service} continued another trace"


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines
