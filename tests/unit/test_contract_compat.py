"""The public contract: the AsyncAPI document covers every topic, and the compatibility check
fails on each kind of breaking change and passes additive ones."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import compat
from schemas.asyncapi import document
from schemas.generate import ASYNCAPI_PATH, JSON_DIR, drifted, json_schemas, render
from schemas.topics import ALL_TOPICS, DECISIONS

pytestmark = pytest.mark.unit

DECIDED = "application.decided.v1.json"
Schema = dict[str, Any]


def decided() -> Schema:
    return copy.deepcopy(json_schemas()[DECIDED])


def breaks_of(change: Callable[[Schema], None]) -> list[str]:
    """Apply a change to the decision event's schema and compare it with the unchanged one."""
    new = decided()
    change(new)
    return [str(b) for b in compat.breaking_changes({DECIDED: decided()}, {DECIDED: new})]


# --- the committed files match the code --------------------------------------------------


def test_committed_asyncapi_document_matches_the_code() -> None:
    assert "asyncapi.json" not in drifted()
    assert ASYNCAPI_PATH.read_text(encoding="utf-8") == render(document())


def test_the_code_is_compatible_with_the_released_contract() -> None:
    release = compat.newest_release()
    old_schemas, old_api = compat.load_release(release)
    assert DECIDED in old_schemas
    assert compat.breaking_changes(old_schemas, json_schemas(), old_api, document()) == []
    assert compat.main([]) == 0


def test_asyncapi_covers_every_topic_with_key_writer_and_messages() -> None:
    doc = json.loads(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    assert doc["asyncapi"].startswith("3.0")
    assert {c["address"] for c in doc["channels"].values()} == {t.name for t in ALL_TOPICS}
    for topic in ALL_TOPICS:
        channel = doc["channels"][topic.name]
        assert (channel["x-key"], channel["x-writer"], channel["x-public"]) == (topic.key, topic.writer, topic.public)
        assert channel["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] == topic.retention_ms
        expected = {cls.event_type for cls in topic.event_types} or {"deadletter"}
        assert set(channel["messages"]) == expected
        operation = doc["operations"][f"{topic.writer}-writes-{topic.name}"]
        assert (operation["action"], operation["channel"]) == ("send", {"$ref": f"#/channels/{topic.name}"})
    assert [t.name for t in ALL_TOPICS if doc["channels"][t.name]["x-public"]] == [DECISIONS.name]


def test_every_message_payload_references_a_committed_json_schema() -> None:
    doc = json.loads(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    for message_id, message in doc["components"]["messages"].items():
        if message_id == "deadletter":
            continue
        envelope_ref, specific = message["payload"]["schema"]["allOf"]
        data_ref = specific["properties"]["data"]["$ref"]
        for ref in (envelope_ref["$ref"], data_ref):
            assert (ASYNCAPI_PATH.parent / ref).is_file(), ref
        assert data_ref == f"./json/{message_id}.json"
        assert specific["properties"]["type"]["const"] == message["name"]
    assert set(doc["components"]["messages"][DECIDED[:-5]]["payload"]["schema"]["allOf"][1]["properties"]) >= {
        "signature",
        "signingkeyid",
    }


# --- breaking changes fail ---------------------------------------------------------------


def remove_field(s: Schema) -> None:
    del s["properties"]["amount_cents"]
    s["required"].remove("amount_cents")


def retype_field(s: Schema) -> None:
    s["properties"]["amount_cents"] = {"type": "number"}


def retype_nested_field(s: Schema) -> None:
    s["$defs"]["FundingYear"]["properties"]["fiscal_year"]["type"] = "string"


def make_optional_field_required(s: Schema) -> None:
    s["required"].append("rules_version")


def add_required_field(s: Schema) -> None:
    s["properties"]["ministry"] = {"type": "string"}
    s["required"].append("ministry")


def tighten_enum(s: Schema) -> None:
    s["$defs"]["Decision"]["enum"].remove("rejected")


def make_required_field_optional(s: Schema) -> None:
    s["required"].remove("decided_at")


def tighten_constraint(s: Schema) -> None:
    s["properties"]["amount_cents"]["maximum"] = 100


def make_field_nullable(s: Schema) -> None:
    s["properties"]["decided_at"] = {"anyOf": [s["properties"]["decided_at"], {"type": "null"}]}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (remove_field, "/amount_cents: field removed"),
        (retype_field, "/amount_cents: retyped: integer -> number"),
        (retype_nested_field, "/funding/items/fiscal_year: retyped: integer -> string"),
        (make_optional_field_required, "/rules_version: optional field made required"),
        (add_required_field, "/ministry: required field added"),
        (tighten_enum, "/decision: enum tightened: rejected no longer allowed"),
        (make_required_field_optional, "/decided_at: required field made optional"),
        (tighten_constraint, "/amount_cents: constraint tightened: maximum 10000000000000 -> 100"),
        (make_field_nullable, "/decided_at: retyped: string -> null|string"),
    ],
)
def test_a_breaking_change_fails_the_check(change: Callable[[Schema], None], expected: str) -> None:
    assert breaks_of(change) == [f"{DECIDED} {expected}"]


def test_removing_an_event_type_breaks() -> None:
    old = json_schemas()
    new = {name: schema for name, schema in old.items() if name != DECIDED}
    assert [str(b) for b in compat.breaking_changes(old, new)] == [f"{DECIDED}: event type removed"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c.update({"x-key": "submission_id"}), "key changed: application_id -> submission_id"),
        (lambda c: c["messages"].clear(), "message application.decided.v1 no longer on the topic"),
    ],
)
def test_changing_a_topic_breaks(change: Callable[[Schema], None], expected: str) -> None:
    new = document()
    change(new["channels"][DECISIONS.name])
    assert [str(b) for b in compat.breaking_changes({}, {}, document(), new)] == [
        f"channel {DECISIONS.name}: {expected}"
    ]


def test_removing_a_topic_breaks() -> None:
    new = document()
    del new["channels"][DECISIONS.name]
    assert [b.what for b in compat.breaking_changes({}, {}, document(), new)] == ["topic removed"]


# --- additive changes pass -----------------------------------------------------------------


def add_optional_field(s: Schema) -> None:
    s["properties"]["grant_notice_url"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}


def add_enum_value(s: Schema) -> None:
    s["$defs"]["Decision"]["enum"].append("partially_approved")


def relax_constraint(s: Schema) -> None:
    del s["properties"]["application_id"]["pattern"]
    s["properties"]["amount_cents"]["maximum"] = 10**14


@pytest.mark.parametrize("change", [add_optional_field, add_enum_value, relax_constraint])
def test_an_additive_change_passes(change: Callable[[Schema], None]) -> None:
    assert breaks_of(change) == []


def test_a_new_event_type_and_a_new_topic_pass() -> None:
    old_api, new_api = document(), document()
    new_api["channels"]["egov.statistics.v1"] = {"address": "egov.statistics.v1", "messages": {}}
    new = {**json_schemas(), "application.appealed.v1.json": {"type": "object", "properties": {}}}
    assert compat.breaking_changes(json_schemas(), new, old_api, new_api) == []


# --- the command CI runs ---------------------------------------------------------------------


def test_the_command_fails_against_a_release_the_code_breaks(tmp_path: Path) -> None:
    release = compat.release("v1", tmp_path)
    assert compat.main(["--against", str(release)]) == 0
    # Pretend v1 had allowed a third decision: the code no longer accepts it, a tightened enum.
    schema_path = release / "json" / DECIDED
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    schema["$defs"]["Decision"]["enum"].append("deferred")
    schema_path.write_text(render(schema), encoding="utf-8")
    assert compat.main(["--against", str(release)]) == 1


def test_a_release_is_never_rewritten(tmp_path: Path) -> None:
    compat.release("v1", tmp_path)
    assert {p.name for p in (tmp_path / "v1" / "json").iterdir()} == {p.name for p in JSON_DIR.glob("*.json")}
    assert compat.newest_release(tmp_path) == tmp_path / "v1"
    with pytest.raises(FileExistsError):
        compat.release("v1", tmp_path)
