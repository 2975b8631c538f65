"""Every HTTP service's OpenAPI 3.1 document, completed the same way, served at /openapi.json and
committed under schemas/openapi/ (one file per service, checked for drift in ``make check``).

FastAPI's own document leaves out what every one of our answers shares: the bearer scheme, errors as
``application/problem+json`` with one Problem schema, the 429 of the failed-authentication throttle
and the 503 of a database that is away (both with ``Retry-After``), operation ids, servers and the
licence. ``describe`` adds them; each service's ``openapi.py`` names its app and calls ``main``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from runtime.problems import PROBLEM_MEDIA_TYPE, ProblemDocument

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from fastapi import FastAPI
    from pydantic import BaseModel

DOCUMENT_DIR = Path(__file__).resolve().parents[1] / "schemas" / "openapi"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# No licence has been chosen for the project yet; the document says so instead of guessing one.
LICENSE = {"name": "Proprietary: Freistaat Thüringen, no licence granted yet", "identifier": "LicenseRef-Proprietary"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "The RFC 6750 bearer challenge", "schema": {"type": "string"}}}
LOCATION = {"Location": {"description": "Where the created resource can be read", "schema": {"type": "string"}}}
# Answers every operation can give, whatever the route says: the throttle and the database are in front.
SHARED_PROBLEMS: dict[str, tuple[str, Mapping[str, Any]]] = {
    "429": ("`auth.throttled`: too many failed authentications from this address; see Retry-After", RETRY_AFTER),
    "503": ("`database.unavailable`: not handled now; retry after Retry-After", RETRY_AFTER),
}
FRAMEWORK_SCHEMAS = ("HTTPValidationError", "ValidationError")
# What a route passes to ``responses=``: status -> the OpenAPI response object (FastAPI completes it).
Responses = dict[int | str, dict[str, Any]]


@dataclass(frozen=True)
class ApiDescription:
    """What a service adds to FastAPI's document."""

    service: str
    port: int
    tags: Mapping[str, str]  # name -> description, in the order the document lists them
    raw_bodies: Sequence[type[BaseModel]] = field(default=())  # request bodies a route reads by hand
    # What every operation may answer besides its own statuses: a service with neither a database nor
    # tokens (statistics) can answer neither 503 database.unavailable nor the throttle's 429.
    shared_problems: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=lambda: SHARED_PROBLEMS)

    @property
    def path(self) -> Path:
        return DOCUMENT_DIR / f"{self.service}.json"


def describe(app: FastAPI, description: ApiDescription) -> dict[str, Any]:
    """The completed document, cached on the app like FastAPI's own."""
    if app.openapi_schema:
        return app.openapi_schema
    for route in app.routes:
        if isinstance(route, APIRoute) and route.operation_id is None:
            route.operation_id = route.name  # the route function's name: stable and readable
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=[{"url": f"http://127.0.0.1:{description.port}", "description": "The local stack (`make run`)"}],
        license_info=LICENSE,
        tags=[{"name": name, "description": text} for name, text in description.tags.items()],
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    models: list[tuple[str, type[BaseModel]]] = [(m.__name__, m) for m in description.raw_bodies]
    models.append(("Problem", ProblemDocument))
    for name, model in models:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(model_schema.pop("$defs", {}))
        schemas[name] = model_schema
    for name in FRAMEWORK_SCHEMAS:
        schemas.pop(name, None)
    for operations in doc["paths"].values():
        for operation in operations.values():
            complete_responses(operation, description.shared_problems)
    app.openapi_schema = doc
    return doc


def complete_responses(
    operation: dict[str, Any], shared: Mapping[str, tuple[str, Mapping[str, Any]]] = SHARED_PROBLEMS
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if operation.get("security"):
        responses.setdefault("401", {"description": "Missing, unknown or revoked token"})
        responses["401"].setdefault("headers", dict(WWW_AUTHENTICATE))
    if operation.get("parameters") or operation.get("requestBody"):
        responses.setdefault("422", {"description": "Invalid parameters or body: every error, with a JSON pointer"})
        if responses["422"].get("description") == "Validation Error":
            responses["422"]["description"] = "Invalid parameters or body: every error, with a JSON pointer"
    if operation.get("requestBody"):
        responses.setdefault("400", {"description": "`request.bad`: the body could not be parsed as JSON"})
    for status, (text, headers) in shared.items():
        responses.setdefault(status, {"description": text}).setdefault("headers", dict(headers))
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}
    operation["responses"] = dict(sorted(responses.items()))


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def serve(app: FastAPI, description: ApiDescription) -> None:
    """/openapi.json (and /docs) answer the completed document, the one committed."""
    app.openapi = lambda: describe(app, description)  # type: ignore[method-assign]


def drifted(document: dict[str, Any], description: ApiDescription) -> bool:
    path = description.path
    return not path.is_file() or path.read_text(encoding="utf-8") != render(document)


def main(argv: Sequence[str], description: ApiDescription, document: Callable[[], dict[str, Any]]) -> int:
    """Write the service's document, or (``--check``) exit 1 if the committed one drifts from the code."""
    path = description.path
    cli = argparse.ArgumentParser(
        prog=f"python -m services.{description.service}.openapi",
        description=f"Write {description.service}'s OpenAPI document to {path}. Exit codes: 0 done or up to date, "
        "1 the committed document drifts (--check), 2 usage.",
    )
    cli.add_argument("--check", action="store_true", help="write nothing; exit 1 if the document drifts from the code")
    if cli.parse_args(argv).check:
        if drifted(document(), description):
            print(f"{path} drifts from the code; run `python -m services.{description.service}.openapi`")
            return 1
        print(f"{path.name} up to date")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(document()), encoding="utf-8")
    print(f"wrote {path}")
    return 0
