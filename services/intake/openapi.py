"""The portal API's OpenAPI 3.1 document: served at /openapi.json and committed under schemas/openapi/.

python -m services.intake.openapi          # write schemas/openapi/intake.json from the code
python -m services.intake.openapi --check  # exit 1 if the committed document drifts from the code
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fastapi.openapi.utils import get_openapi

from schemas.application import FundingApplication
from services.intake.models import WithdrawalRequest

if TYPE_CHECKING:
    from fastapi import FastAPI

    from services.intake.api import Intake

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "schemas" / "openapi" / "intake.json"
PROBLEM_MEDIA_TYPE = "application/problem+json"
# Bodies the routes read themselves (to hash the raw bytes and report every error in our own codes).
RAW_BODIES = (FundingApplication, WithdrawalRequest)


def complete(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the request bodies read by hand, with errors as problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in RAW_BODIES:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    for operations in schema["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status.isdigit() and int(status) >= 400 and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    app.openapi_schema = schema
    return schema


def document() -> dict[str, Any]:
    from services.intake.api import build_api

    # The routes read their dependencies only while serving a request, so none are needed to describe them.
    return complete(build_api(cast("Intake", None)))


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def drifted() -> bool:
    return not DOCUMENT_PATH.is_file() or DOCUMENT_PATH.read_text(encoding="utf-8") != render(document())


def main(argv: list[str]) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m services.intake.openapi", description=f"Write intake's OpenAPI document to {DOCUMENT_PATH}."
    )
    cli.add_argument("--check", action="store_true", help="write nothing; exit 1 if the document drifts from the code")
    if cli.parse_args(argv).check:
        if drifted():
            print(f"{DOCUMENT_PATH} drifts from the code; run `python -m services.intake.openapi`")
            return 1
        print("OpenAPI document up to date")
        return 0
    DOCUMENT_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT_PATH.write_text(render(document()), encoding="utf-8")
    print(f"wrote {DOCUMENT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
