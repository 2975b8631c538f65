"""Regenerate the committed contract files from the code: a JSON Schema per event type and the
AsyncAPI 3.0 document for every topic.

python -m schemas.generate          # write schemas/json/*.json and schemas/asyncapi.json
python -m schemas.generate --check  # exit 1 if the committed files drift from the code

Backward compatibility with the released contract is checked by ``python -m schemas.compat``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from schemas.asyncapi import document
from schemas.envelope import Envelope
from schemas.topics import EVENT_TYPES

SCHEMAS_DIR = Path(__file__).parent
JSON_DIR = SCHEMAS_DIR / "json"
ASYNCAPI_PATH = SCHEMAS_DIR / "asyncapi.json"


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# The one dialect every published schema declares; pydantic writes 2020-12 (``$defs``, ``prefixItems``).
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def published(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema as consumers validate against it: the dialect declared, and open to additive change.

    Producers are strict (``extra="forbid"`` in their pydantic models), but a reader validating with a
    closed schema would refuse every event that gained an optional field since its copy was made, which
    is exactly the change the contract allows. So no ``additionalProperties: false`` is published."""
    return {"$schema": DIALECT, **opened(schema)}


def opened(node: Any) -> Any:
    """``node`` without any ``additionalProperties: false``, at any depth."""
    if isinstance(node, dict):
        return {k: opened(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [opened(v) for v in node]
    return node


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name in schemas/json -> JSON Schema, from the pydantic models, as published."""
    schemas = {"envelope.json": published(Envelope.model_json_schema())}
    for wire_type, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"urn:{wire_type}"
        schemas[f"{model.event_type}.json"] = published(schema)
    return schemas


def expected_files() -> dict[str, str]:
    return {name: render(schema) for name, schema in json_schemas().items()}


def expected_documents() -> dict[Path, str]:
    """Every generated file, by path."""
    files = {JSON_DIR / name: text for name, text in expected_files().items()}
    files[ASYNCAPI_PATH] = render(document())
    return files


def drifted() -> list[str]:
    """Generated files (relative to schemas/) that are missing, differ, or are stale."""
    expected = expected_documents()
    stale = set(JSON_DIR.glob("*.json")) - expected.keys()
    changed = [p for p, text in expected.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    return sorted(str(p.relative_to(SCHEMAS_DIR)) for p in [*changed, *stale])


def write() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    expected = expected_documents()
    for stale in set(JSON_DIR.glob("*.json")) - expected.keys():
        stale.unlink()
    for path, text in expected.items():
        path.write_text(text, encoding="utf-8")
    return len(expected)


def main(argv: list[str]) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m schemas.generate",
        description="Write the JSON Schemas and the AsyncAPI document.",
        epilog="Exit codes: 0 written or up to date, 1 the files drift from the models (--check), 2 usage.",
    )
    cli.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files drift from the models")
    if cli.parse_args(argv).check:
        stale = drifted()
        if stale:
            print("schemas drift from the models; run `python -m schemas.generate`:", *stale, sep="\n  ")
            return 1
        print("schemas up to date")
        return 0
    print(f"wrote {write()} contract files under {SCHEMAS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
