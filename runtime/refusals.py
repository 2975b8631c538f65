"""A command the domain will not carry out, said without HTTP: the edge maps the kind to a status.

Domain and command code raise ``Refused(Refusal.CONFLICT, "case.already_decided", "...")``; the HTTP
edge (``runtime.problems``) answers it as RFC 9457 problem details with the status of its kind, in one
place, so the pure core never carries status codes.
"""

from __future__ import annotations

from enum import StrEnum


class Refusal(StrEnum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    INVALID = "invalid"


class Refused(Exception):
    """``code`` is the stable, machine-readable problem code; the message is for people."""

    def __init__(self, kind: Refusal, code: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.code = kind, code
