"""The contract: envelope, topic registry, committed JSON Schemas and the rules file."""

from __future__ import annotations

import inspect
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import events as ev
from schemas.envelope import EVENT_TYPE_PREFIX, Envelope, Event
from schemas.generate import JSON_DIR, drifted
from schemas.rules import DEFAULT_RULES, RulesFileError, load_rules
from schemas.topics import ALL_TOPICS, DOMAIN_TOPICS, EVENT_TYPES, SERVICES, dead_letters, topic_of
from tests.unit import factories as f

pytestmark = pytest.mark.unit

APP_ID = "TH-EGOV-2027-000042"
ALL_EVENT_CLASSES = [
    cls for _, cls in inspect.getmembers(ev, inspect.isclass) if issubclass(cls, Event) and cls is not Event
]


def withdrawn() -> ev.ApplicationWithdrawn:
    return ev.ApplicationWithdrawn(application_id=APP_ID, portal_id="portal-a", reason="Projekt verschoben")


# --- envelope ---------------------------------------------------------------------------


def test_wrap_fills_the_cloudevents_attributes() -> None:
    cause = Envelope.wrap(withdrawn(), source="/egov/intake", subject=APP_ID)
    env = Envelope.wrap(withdrawn(), source="/egov/notify", subject=APP_ID, cause=cause, actor="portal-a")
    assert env.specversion == "1.0"
    assert env.datacontenttype == "application/json"
    assert env.type == "de.thueringen.egov.application.withdrawn.v1"
    assert env.subject == env.correlationid == APP_ID
    assert env.causationid == cause.id
    assert env.actor == "portal-a"
    assert env.id != cause.id
    assert str(uuid.UUID(env.id)) == env.id
    assert env.time.tzinfo is not None
    assert abs(datetime.now(UTC) - env.time) < timedelta(minutes=1)
    assert env.data == {"application_id": APP_ID, "portal_id": "portal-a", "reason": "Projekt verschoben"}


def test_correlation_is_the_subject_even_when_caused_by_another_application() -> None:
    cause = Envelope.wrap(withdrawn(), source="/egov/intake", subject="TH-EGOV-2027-000001")
    env = Envelope.wrap(withdrawn(), source="/egov/budget", subject=APP_ID, cause=cause)
    assert env.correlationid == APP_ID
    assert env.causationid == cause.id


def test_envelope_round_trips_through_bytes() -> None:
    event = ev.ApplicationReceived(
        application_id=APP_ID,
        portal_id="portal-a",
        received_at=datetime(2027, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=1))),
        category_open=True,
        application=f.funding_application(),
    )
    env = Envelope.wrap(event, source="/egov/intake", subject=APP_ID, event_id="evt-1", actor="portal-a")
    raw = env.to_bytes()
    back = Envelope.from_bytes(raw)
    assert back == env
    assert back.payload(ev.ApplicationReceived) == event
    wire = json.loads(raw)
    assert "causationid" not in wire  # None is left off the wire
    assert wire["data"]["application"]["project"]["requested_amount_cents"] == f.REQUESTED
    assert wire["data"]["received_at"] == "2027-01-15T10:30:00+01:00"


def test_unknown_envelope_extensions_survive_the_round_trip() -> None:
    raw = Envelope.wrap(withdrawn(), source="/egov/intake", subject=APP_ID).model_dump(mode="json")
    raw["traceparent"] = "00-abc-def-01"
    back = Envelope.from_bytes(Envelope.model_validate(raw).to_bytes())
    assert back.model_extra == {"traceparent": "00-abc-def-01"}


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2027, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2027, 7, 1, 5, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2027, 7, 1, 10, 0, tzinfo=UTC),
    ],
)
def test_time_is_normalised_to_utc(moment: datetime) -> None:
    env = Envelope.wrap(withdrawn(), source="/egov/intake", subject=APP_ID, time=moment)
    assert env.time == datetime(2027, 7, 1, 10, 0, tzinfo=UTC)
    assert env.time.utcoffset() == timedelta(0)
    assert json.loads(env.to_bytes())["time"] in {"2027-07-01T10:00:00Z", "2027-07-01T10:00:00+00:00"}
    wire = env.model_dump(mode="json")
    wire["time"] = "2027-07-01T12:00:00+02:00"
    assert Envelope.model_validate(wire).time.utcoffset() == timedelta(0)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        Envelope.wrap(withdrawn(), source="/egov/intake", subject=APP_ID, time=datetime(2027, 7, 1, 12, 0))  # noqa: DTZ001 - the naive time under test
    raw = Envelope.wrap(withdrawn(), source="/egov/intake", subject=APP_ID).model_dump(mode="json")
    raw["time"] = "2027-07-01T12:00:00"
    with pytest.raises(ValidationError):
        Envelope.from_bytes(json.dumps(raw).encode())


def test_payload_of_another_type_is_refused() -> None:
    env = Envelope.wrap(withdrawn(), source="/egov/intake", subject=APP_ID)
    assert env.is_a(ev.ApplicationWithdrawn)
    assert not env.is_a(ev.ApplicationDecided)
    with pytest.raises(TypeError, match="ApplicationDecided"):
        env.payload(ev.ApplicationDecided)


def test_payload_that_does_not_fit_its_type_is_refused() -> None:
    raw = Envelope.wrap(withdrawn(), source="/egov/intake", subject=APP_ID).model_dump(mode="json")
    raw["data"]["application_id"] = "not-an-id"
    with pytest.raises(ValidationError):
        Envelope.model_validate(raw).payload(ev.ApplicationWithdrawn)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(specversion="0.3"),
        lambda r: r.pop("id"),
        lambda r: r.update(subject=""),
        lambda r: r.update(data=[1, 2]),
        lambda r: r.update(datacontenttype="text/xml"),
    ],
    ids=["specversion", "no-id", "empty-subject", "data-not-object", "content-type"],
)
def test_malformed_envelopes_are_refused(mutate: Callable[[dict[str, Any]], object]) -> None:
    raw = Envelope.wrap(withdrawn(), source="/egov/intake", subject=APP_ID).model_dump(mode="json")
    mutate(raw)
    with pytest.raises(ValidationError):
        Envelope.from_bytes(json.dumps(raw).encode())


def test_events_are_frozen_and_strict() -> None:
    event = withdrawn()
    with pytest.raises(ValidationError):
        event.reason = "anders"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ev.ApplicationWithdrawn(application_id=APP_ID, portal_id="p", surprise=1)  # type: ignore[call-arg]


# --- topics ---------------------------------------------------------------------------------


def test_every_event_type_is_on_exactly_one_topic() -> None:
    assert len(ALL_EVENT_CLASSES) >= 14
    for cls in ALL_EVENT_CLASSES:
        holders = [t.name for t in DOMAIN_TOPICS if cls in t.event_types]
        assert len(holders) == 1, (cls.__name__, holders)
        assert topic_of(cls).name == holders[0]
    assert sum(len(t.event_types) for t in DOMAIN_TOPICS) == len(ALL_EVENT_CLASSES)


def test_event_types_are_versioned_and_unique() -> None:
    wire_types = [cls.wire_type() for cls in ALL_EVENT_CLASSES]
    assert len(set(wire_types)) == len(wire_types)
    assert set(EVENT_TYPES) == set(wire_types)
    for cls in ALL_EVENT_CLASSES:
        assert EVENT_TYPES[cls.wire_type()] is cls
        assert re.fullmatch(re.escape(EVENT_TYPE_PREFIX) + r"[a-z_]+\.[a-z_]+\.v[0-9]+", cls.wire_type())


def test_an_event_on_no_topic_is_an_error() -> None:
    class Stray(Event):
        event_type = "stray.v1"

    with pytest.raises(KeyError, match="Stray"):
        topic_of(Stray)


def test_every_topic_has_exactly_one_writer() -> None:
    writers = {*SERVICES, "portals"}
    for topic in ALL_TOPICS:
        assert isinstance(topic.writer, str), topic.name
        assert topic.writer in writers, topic.name
    # The writer of each event's topic is the service that emits it (DESIGN §1).
    assert topic_of(ev.ApplicationReceived).writer == "intake"
    assert topic_of(ev.ApplicationReviewed).writer == "review"
    assert topic_of(ev.ApplicationDecided).writer == "budget"
    assert topic_of(ev.NotificationDelivered).writer == "notify"
    assert topic_of(ev.SubmitApplication).writer == "portals"


def test_topic_names_are_unique_and_every_service_owns_its_dead_letters() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(set(names)) == len(names)
    for service in SERVICES:
        dlq = dead_letters(service)
        assert dlq.name in names
        assert dlq.writer == service
        assert dlq.event_types == ()


def test_domain_topics_are_keyed_by_application_and_kept_forever() -> None:
    for topic in DOMAIN_TOPICS:
        if topic.name == "egov.submissions.v1":
            assert topic.retention_ms > 0
            continue
        assert topic.config["retention.ms"] == "-1", topic.name
        assert topic.key == ("fiscal_year" if topic.name == "egov.budget-admin.v1" else "application_id")
    assert [t.name for t in DOMAIN_TOPICS if t.public] == ["egov.decisions.v1"]


# --- JSON Schemas ----------------------------------------------------------------------


def test_committed_json_schemas_match_the_models() -> None:
    assert drifted() == []
    assert {p.stem for p in JSON_DIR.glob("*.json")} == {c.event_type for c in ALL_EVENT_CLASSES} | {"envelope"}


def test_committed_schema_keeps_money_integer() -> None:
    schema = json.loads((JSON_DIR / "application.decided.v1.json").read_text(encoding="utf-8"))
    assert schema["$id"] == "urn:de.thueringen.egov.application.decided.v1"
    assert schema["properties"]["amount_cents"]["type"] == "integer"


# --- rules file --------------------------------------------------------------------------


def test_the_real_rules_file_loads() -> None:
    rules = load_rules()
    assert rules.version == "egov-2024-v1"
    assert rules.state_code == "16"
    assert rules.min_grant_cents < rules.four_eyes_above_cents < rules.max_grant_cents
    assert {c.id for c in rules.categories if c.open} == {"dms_eservices", "schulung"}  # only 2c and 2f
    assert len(rules.categories) == 9
    schulung = rules.category("schulung")
    assert schulung is not None
    assert schulung.financing == "fixed"
    assert rules.category("raumfahrt") is None


def write_rules(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "rules.toml"
    path.write_bytes(text.encode(encoding))
    return path


REAL = DEFAULT_RULES.read_text(encoding="utf-8")


def test_a_copy_of_the_real_file_loads_from_elsewhere(tmp_path: Path) -> None:
    assert load_rules(write_rules(tmp_path, REAL)) == load_rules()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param(REAL.replace('state_code = "16"', 'state_code = "16'), ["not valid TOML"], id="broken-toml"),
        pytest.param("version = 'again'\n" + REAL, ["not valid TOML"], id="duplicate-key"),
        pytest.param(re.sub(r"(?m)^min_grant_cents.*$", "", REAL), ["min_grant_cents", "Field required"], id="missing"),
        pytest.param(re.sub(r"(?m)^version.*$", "", REAL), ["version"], id="missing-version"),
        pytest.param(
            REAL.replace("min_grant_cents = 500_000", "min_grant_cents = 60_000_000"),
            ["min_grant_cents exceeds max_grant_cents"],
            id="min-above-max",
        ),
        pytest.param(REAL.replace('id = "e_rechnung"', 'id = "e_akte"'), ["category ids are not unique"], id="dup-ids"),
        pytest.param(
            REAL.replace('max_rate_percent = 80\nrequired_attachments = ["cost_plan"]\n', "", 1),
            ["e_rechnung", "share financing needs max_rate_percent"],
            id="share-without-rate",
        ),
        pytest.param(REAL.replace('state_code = "16"', 'state_code = "TH"'), ["state_code"], id="bad-state-code"),
        pytest.param(REAL.replace("valid_from = 2024-07-01", 'valid_from = "soon"'), ["valid_from"], id="bad-date"),
        pytest.param(
            REAL.replace('"zweckverband"]', '"zweckverband", "bundesland"]'), ["allowed_applicant_kinds"], id="kind"
        ),
        pytest.param(REAL + "\nbonus_percent = 5\n", ["categories.8.bonus_percent"], id="unknown-category-field"),
        pytest.param("bonus_percent = 5\n" + REAL, ["bonus_percent", "Extra inputs"], id="unknown-field"),
        pytest.param(REAL.split("[[categories]]")[0], ["categories"], id="no-categories"),
    ],
)
def test_malformed_rules_file_is_refused_with_a_message_naming_the_problem(
    tmp_path: Path, text: str, names: list[str]
) -> None:
    assert text != REAL
    path = write_rules(tmp_path, text)
    with pytest.raises(RulesFileError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert str(path) in message
    for name in names:
        assert name in message, message


def test_missing_rules_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match="not found"):
        load_rules(tmp_path / "nope.toml")


def test_rules_file_in_another_encoding_is_refused(tmp_path: Path) -> None:
    # German umlauts saved as Latin-1 by an editor: a malformed file, not a crash.
    path = write_rules(tmp_path, REAL, encoding="latin-1")
    with pytest.raises(RulesFileError, match="UTF-8"):
        load_rules(path)
