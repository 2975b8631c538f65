"""JSON that names each member of an object once. RFC 8259 leaves a repeated name open and most
parsers keep the last one, so a portal's library and ours could read one body as two different
applications: every body and submitted record with a repeat is refused, naming where (RFC 6901).

``loads`` is ``json.loads`` with the check; the JSON pointer of the repeated member is worked out only
when there is one (a second parse), so a clean body costs one parse. Pure: intake's domain uses it,
and ``runtime.problems.StrictJsonRoute`` makes FastAPI read request bodies with it.
"""

from __future__ import annotations

import json
from typing import Any

DUPLICATE_KEY = "body.duplicate_key"


class DuplicateMember(ValueError):
    """An object names ``key`` twice; ``pointer`` is where the second one is (RFC 6901)."""

    def __init__(self, pointer: str, key: str) -> None:
        super().__init__(f"the member {key!r} appears twice in one object")
        self.pointer, self.key = pointer, key


class _Repeated(ValueError):
    pass


class _Members(list[tuple[str, Any]]):
    """An object kept as its members in order, repeats included, to find where a repeat is."""


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _Repeated
    return members


def loads(text: bytes | str) -> Any:
    """The JSON document; ``DuplicateMember`` if an object in it names a member twice."""
    try:
        return json.loads(text, object_pairs_hook=_once)
    except _Repeated:
        found = first_repeat(json.loads(text, object_pairs_hook=_Members))
        assert found is not None, "the first parse saw a repeat"
        raise DuplicateMember(*found) from None


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def first_repeat(node: Any, at: str = "") -> tuple[str, str] | None:
    """(pointer, name) of the first repeated member in document order, an object's own before its children's."""
    if isinstance(node, _Members):
        seen: set[str] = set()
        for name, _ in node:
            if name in seen:
                return f"{at}/{escape(name)}", name
            seen.add(name)
        children = ((f"{at}/{escape(name)}", value) for name, value in node)
    elif isinstance(node, list):
        children = ((f"{at}/{index}", value) for index, value in enumerate(node))
    else:
        return None
    for where, value in children:
        if (found := first_repeat(value, where)) is not None:
            return found
    return None
