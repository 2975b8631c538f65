"""JSON logging: one object per line, the application id as correlation id.

Every line written while an event is handled names the application (``correlation_id``, the envelope's
``correlationid``) and the event (``event_id``); every line written while an HTTP request is served
names the request (``request_id``); and every line in a trace names its ``trace_id`` and ``span_id``,
so an operator can go from a log line to the trace and back.

Never pass personal data (contact names, e-mail addresses) or secrets to a log call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

from runtime import tracing

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
event_id: ContextVar[str | None] = ContextVar("event_id", default=None)
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("correlation_id", correlation_id), ("event_id", event_id), ("request_id", request_id)):
            if value := var.get():
                entry[name] = value
        if ids := tracing.ids():
            entry["trace_id"], entry["span_id"] = ids
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter at INFO is noise for operators; their warnings still show.
    for noisy in ("aiokafka", "uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def correlated(application_id: str | None, event: str | None = None) -> Iterator[None]:
    """Log lines inside name this application and, when given, this event id."""
    token = correlation_id.set(application_id)
    event_token = event_id.set(event)
    try:
        yield
    finally:
        event_id.reset(event_token)
        correlation_id.reset(token)
