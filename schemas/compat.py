"""Backward compatibility of the contract with its last released version.

Downstream systems rely on the events' shape for years. A change breaks them when it
removes or retypes a field, makes an optional field required (or a required one
optional), adds a required field, tightens an enum or a constraint, or removes an
event type, a topic or a topic's key. Adding an optional field, an enum value, an
event type or a topic is compatible. A breaking change needs a new ``.v2`` type.

python -m schemas.compat                  # compare the code with the newest schemas/contract/vN; exit 1 if broken
python -m schemas.compat --release v2     # freeze the current contract as schemas/contract/v2
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.asyncapi import document
from schemas.generate import json_schemas, render

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

CONTRACT_DIR = Path(__file__).parent / "contract"
Schema = dict[str, Any]

LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems")
UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")
EXACT = ("pattern", "format")


@dataclass(frozen=True)
class Break:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def newest_release(contract_dir: Path = CONTRACT_DIR) -> Path:
    releases = [p for p in contract_dir.glob("v*") if p.is_dir() and p.name[1:].isdigit()]
    if not releases:
        raise FileNotFoundError(f"no released contract under {contract_dir}")
    return max(releases, key=lambda p: int(p.name[1:]))


def load_release(release: Path) -> tuple[dict[str, Schema], Schema]:
    schemas = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted((release / "json").glob("*.json"))}
    return schemas, json.loads((release / "asyncapi.json").read_text(encoding="utf-8"))


def breaking_changes(
    old: Mapping[str, Schema], new: Mapping[str, Schema], old_api: Schema | None = None, new_api: Schema | None = None
) -> list[Break]:
    """Every break between two contracts: JSON Schemas by file name, and optionally their AsyncAPI documents."""
    breaks = [Break(name, "event type removed") for name in sorted(old.keys() - new.keys())]
    for name in sorted(old.keys() & new.keys()):
        breaks.extend(SchemaComparison(name, old[name], new[name]).run())
    if old_api is not None and new_api is not None:
        breaks.extend(channel_breaks(old_api, new_api))
    return breaks


def channel_breaks(old_api: Schema, new_api: Schema) -> Iterator[Break]:
    old_channels, new_channels = old_api.get("channels", {}), new_api.get("channels", {})
    for name, old in sorted(old_channels.items()):
        new = new_channels.get(name)
        if new is None:
            yield Break(f"channel {name}", "topic removed")
            continue
        if old.get("x-key") != new.get("x-key"):
            yield Break(f"channel {name}", f"key changed: {old.get('x-key')} -> {new.get('x-key')}")
        for message in sorted(old.get("messages", {}).keys() - new.get("messages", {}).keys()):
            yield Break(f"channel {name}", f"message {message} no longer on the topic")


class SchemaComparison:
    """Walks an old and a new JSON Schema side by side, resolving each one's own ``$defs``."""

    def __init__(self, name: str, old_root: Schema, new_root: Schema) -> None:
        self.name, self.old_root, self.new_root = name, old_root, new_root
        self.seen: set[tuple[str, str]] = set()
        self.breaks: list[Break] = []

    def run(self) -> list[Break]:
        self.compare(self.old_root, self.new_root, "")
        return self.breaks

    def fail(self, path: str, what: str) -> None:
        self.breaks.append(Break(f"{self.name} {path or '/'}", what))

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if refs != ("", ""):
            if refs in self.seen:
                return  # a recursive model: this pair is already being compared
            self.seen.add(refs)
        old, new = resolve(old, self.old_root), resolve(new, self.new_root)
        old_types, new_types = types(old, self.old_root), types(new, self.new_root)
        if old_types != new_types:
            self.fail(path, f"retyped: {'|'.join(sorted(old_types))} -> {'|'.join(sorted(new_types))}")
            return
        if alternatives(old) or alternatives(new):
            self.compare_alternatives(old, new, path)
            return
        self.compare_values(old, new, path)
        self.compare_bounds(old, new, path)
        if "object" in old_types:
            self.compare_objects(old, new, path)
        if "items" in old and "items" in new:
            self.compare(old["items"], new["items"], f"{path}/items")

    def compare_alternatives(self, old: Schema, new: Schema, path: str) -> None:
        """Optional fields are ``anyOf [X, null]``: compare the branches of the same type."""
        old_by_type = {types(resolve(a, self.old_root), self.old_root): a for a in alternatives(old) or [old]}
        new_by_type = {types(resolve(a, self.new_root), self.new_root): a for a in alternatives(new) or [new]}
        for kind, branch in old_by_type.items():
            if kind in new_by_type and kind != frozenset({"null"}):
                self.compare(branch, new_by_type[kind], path)

    def compare_values(self, old: Schema, new: Schema, path: str) -> None:
        old_values, new_values = allowed_values(old), allowed_values(new)
        if new_values is None:
            return
        if old_values is None:
            self.fail(path, f"enum introduced: only {sorted(map(str, new_values))} allowed")
            return
        removed = [v for v in old_values if v not in new_values]
        if removed:
            self.fail(path, f"enum tightened: {', '.join(map(str, removed))} no longer allowed")

    def compare_bounds(self, old: Schema, new: Schema, path: str) -> None:
        for keyword in (*LOWER_BOUNDS, *UPPER_BOUNDS, *EXACT):
            before, after = old.get(keyword), new.get(keyword)
            if after is None or after == before:
                continue
            relaxed = before is not None and (
                (keyword in LOWER_BOUNDS and after < before) or (keyword in UPPER_BOUNDS and after > before)
            )
            if not relaxed:
                self.fail(path, f"constraint tightened: {keyword} {before} -> {after}")

    def compare_objects(self, old: Schema, new: Schema, path: str) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for field, schema in old_props.items():
            if field not in new_props:
                self.fail(f"{path}/{field}", "field removed")
            else:
                self.compare(schema, new_props[field], f"{path}/{field}")
        for field in sorted(new_required - old_required):
            self.fail(
                f"{path}/{field}", "optional field made required" if field in old_props else "required field added"
            )
        for field in sorted((old_required - new_required) & new_props.keys()):
            self.fail(f"{path}/{field}", "required field made optional")
        if old.get("additionalProperties", True) is not False and new.get("additionalProperties", True) is False:
            self.fail(path, "additional properties no longer allowed")


def resolve(schema: Schema, root: Schema) -> Schema:
    """Follow local ``$ref``s (and one-element ``allOf`` wrappers); keywords beside them are kept."""
    while "$ref" in schema or len(schema.get("allOf", [])) == 1:
        if "$ref" not in schema:
            schema = {**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}
            continue
        ref: str = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are compared, not {ref}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def alternatives(schema: Schema) -> list[Schema]:
    return list(schema.get("anyOf") or schema.get("oneOf") or [])


def types(schema: Schema, root: Schema) -> frozenset[str]:
    if "type" in schema:
        kind = schema["type"]
        return frozenset(kind if isinstance(kind, list) else [kind])
    if alternatives(schema):
        return frozenset().union(*(types(resolve(a, root), root) for a in alternatives(schema)))
    values = allowed_values(schema)
    if values is not None:
        return frozenset(json_type(v) for v in values)
    return frozenset({"object"}) if "properties" in schema else frozenset({"any"})


def allowed_values(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    return list(schema["enum"]) if "enum" in schema else None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number", list: "array", dict: "object"}[type(value)]


def current() -> tuple[dict[str, Schema], Schema]:
    return json_schemas(), document()


def release(version: str, contract_dir: Path = CONTRACT_DIR) -> Path:
    """Freeze the contract as it is in the code; a release is never rewritten."""
    target = contract_dir / version
    if target.exists():
        raise FileExistsError(f"{target} exists: a released contract is never rewritten")
    schemas, api = current()
    (target / "json").mkdir(parents=True)
    for name, schema in schemas.items():
        (target / "json" / name).write_text(render(schema), encoding="utf-8")
    (target / "asyncapi.json").write_text(render(api), encoding="utf-8")
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.compat",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 compatible (or released), 1 breaking changes found, 2 usage.",
    )
    parser.add_argument("--release", metavar="VERSION", help="freeze the current contract as VERSION (e.g. v2)")
    parser.add_argument("--against", type=Path, help="a released contract directory (default: the newest)")
    args = parser.parse_args(argv)
    if args.release:
        print(f"released the contract as {release(args.release)}")
        return 0
    baseline = args.against or newest_release()
    old_schemas, old_api = load_release(baseline)
    new_schemas, new_api = current()
    breaks = breaking_changes(old_schemas, new_schemas, old_api, new_api)
    if breaks:
        print(f"the contract breaks {baseline.name}; make a new .v2 event type instead:", *breaks, sep="\n  ")
        return 1
    print(f"contract compatible with {baseline.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
