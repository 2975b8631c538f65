"""Regenerate the committed JSON Schema files from the pydantic models.

python -m schemas.generate          # write schemas/json/*.json
python -m schemas.generate --check  # exit 1 if the committed files drift
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.envelope import Envelope
from schemas.topics import EVENT_TYPES

JSON_DIR = Path(__file__).parent / "json"


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    files = {"envelope.json": render(Envelope.model_json_schema())}
    for wire_type, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"urn:{wire_type}"
        files[f"{model.event_type}.json"] = render(schema)
    return files


def drifted() -> list[str]:
    expected = expected_files()
    present = {p.name for p in JSON_DIR.glob("*.json")}
    changed = [n for n, text in expected.items() if not (JSON_DIR / n).is_file() or (JSON_DIR / n).read_text() != text]
    return sorted(changed + list(present - expected.keys()))


def write() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    expected = expected_files()
    for stale in {p.name for p in JSON_DIR.glob("*.json")} - expected.keys():
        (JSON_DIR / stale).unlink()
    for name, text in expected.items():
        (JSON_DIR / name).write_text(text)


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = drifted()
        if stale:
            print("schemas drift from the models; run `python -m schemas.generate`:", *stale, sep="\n  ")
            return 1
        print("schemas up to date")
        return 0
    write()
    print(f"wrote {len(expected_files())} schema files to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
