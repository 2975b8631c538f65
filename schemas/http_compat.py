"""Backward compatibility of the HTTP APIs with their released OpenAPI documents.

Portals, caseworker tools and admin scripts are written against ``schemas/openapi/released/``. A
change breaks them when it removes an operation or a success answer, renames an operation id, adds a
required parameter or makes the body required, tightens what a request may carry, or removes or
retypes what an answer carries (the same schema rules as the event contract, ``schemas.compat``).
The committed documents are compared, which ``python -m services.<name>.openapi --check`` keeps
equal to the code.

python -m schemas.http_compat                # compare schemas/openapi/*.json with the released copies; exit 1 if broken
python -m schemas.http_compat --release      # freeze the current documents as the released ones
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.compat import Break, SchemaComparison

if TYPE_CHECKING:
    from collections.abc import Iterator

OPENAPI_DIR = Path(__file__).parent / "openapi"
RELEASED_DIR = OPENAPI_DIR / "released"
METHODS = ("get", "put", "post", "delete", "patch")
Document = dict[str, Any]


def operations(doc: Document) -> dict[str, Document]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in doc.get("paths", {}).items()
        for method, operation in item.items()
        if method in METHODS
    }


def breaking_changes(name: str, old: Document, new: Document) -> list[Break]:
    breaks: list[Break] = []
    new_operations = operations(new)
    for where, old_operation in sorted(operations(old).items()):
        new_operation = new_operations.get(where)
        if new_operation is None:
            breaks.append(Break(f"{name} {where}", "operation removed"))
            continue
        breaks.extend(OperationComparison(f"{name} {where}", old, new).run(old_operation, new_operation))
    return breaks


class OperationComparison:
    """One operation, old and new, each schema resolved against its own document."""

    def __init__(self, where: str, old_doc: Document, new_doc: Document) -> None:
        self.where, self.old_doc, self.new_doc = where, old_doc, new_doc

    def run(self, old: Document, new: Document) -> list[Break]:
        return [*self.identity(old, new), *self.request(old, new), *self.responses(old, new)]

    def schema_breaks(self, what: str, old: Document, new: Document) -> list[Break]:
        # A request's and an answer's schema wrapped as roots whose $refs reach their documents' components.
        old_root, new_root = {**self.old_doc, **old}, {**self.new_doc, **new}
        return SchemaComparison(f"{self.where} {what}", old_root, new_root).run()

    def identity(self, old: Document, new: Document) -> Iterator[Break]:
        if old.get("operationId") != new.get("operationId"):
            yield Break(self.where, f"operationId changed: {old.get('operationId')} -> {new.get('operationId')}")
        if not old.get("security") and new.get("security"):
            yield Break(self.where, "credentials now required")

    def request(self, old: Document, new: Document) -> Iterator[Break]:
        old_params = {(p["in"], p["name"].lower()): p for p in old.get("parameters", [])}
        for p in new.get("parameters", []):
            key = (p["in"], p["name"].lower())
            if key not in old_params:
                if p.get("required"):
                    yield Break(self.where, f"required {p['in']} parameter {p['name']} added")
                continue
            if p.get("required") and not old_params[key].get("required"):
                yield Break(self.where, f"{p['in']} parameter {p['name']} made required")
            yield from self.schema_breaks(f"{p['in']} {p['name']}", old_params[key]["schema"], p["schema"])
        old_body, new_body = old.get("requestBody"), new.get("requestBody")
        if new_body is None:
            return
        if old_body is None or (new_body.get("required") and not old_body.get("required")):
            if new_body.get("required"):
                yield Break(self.where, "request body made required")
            return
        for media, content in old_body.get("content", {}).items():
            if media not in new_body.get("content", {}):
                yield Break(self.where, f"request body as {media} no longer accepted")
                continue
            yield from self.schema_breaks(f"body {media}", content["schema"], new_body["content"][media]["schema"])

    def responses(self, old: Document, new: Document) -> Iterator[Break]:
        new_responses = new.get("responses", {})
        for status, old_response in old.get("responses", {}).items():
            new_response = new_responses.get(status)
            if new_response is None:
                if status.startswith("2"):
                    yield Break(self.where, f"answer {status} removed")
                continue
            for header in sorted(old_response.get("headers", {}).keys() - new_response.get("headers", {}).keys()):
                yield Break(self.where, f"answer {status} no longer declares header {header}")
            for media, content in old_response.get("content", {}).items():
                if media not in new_response.get("content", {}):
                    yield Break(self.where, f"answer {status} no longer as {media}")
                    continue
                new_schema = new_response["content"][media].get("schema", {})
                yield from self.schema_breaks(f"answer {status} {media}", content.get("schema", {}), new_schema)


def load(directory: Path) -> dict[str, Document]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def check(current_dir: Path = OPENAPI_DIR, released_dir: Path = RELEASED_DIR) -> list[Break]:
    current, released = load(current_dir), load(released_dir)
    breaks = [Break(name, "API document removed") for name in sorted(released.keys() - current.keys())]
    for name in sorted(released.keys() & current.keys()):
        breaks.extend(breaking_changes(name, released[name], current[name]))
    return breaks


def main(argv: list[str]) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m schemas.http_compat",
        description="Compare the HTTP APIs' OpenAPI documents with their released copies. "
        "Exit codes: 0 compatible (or released), 1 breaking changes found, 2 usage.",
    )
    cli.add_argument("--release", action="store_true", help=f"copy the current documents to {RELEASED_DIR}")
    if cli.parse_args(argv).release:
        RELEASED_DIR.mkdir(parents=True, exist_ok=True)
        for path in sorted(OPENAPI_DIR.glob("*.json")):
            shutil.copyfile(path, RELEASED_DIR / path.name)
        print(f"released {len(list(OPENAPI_DIR.glob('*.json')))} documents to {RELEASED_DIR}")
        return 0
    breaks = check()
    for found in breaks:
        print(f"breaking: {found}")
    if breaks:
        print(f"{len(breaks)} breaking change(s) against {RELEASED_DIR}; keep the old behaviour or version the path")
        return 1
    print("HTTP APIs compatible with the released documents")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
