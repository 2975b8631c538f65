"""One access-log line per HTTP request, a request id, and the server span every trace starts with.

The line names the method, the route template (``/v1/applications/{application_id}``, not the raw
path, so no id from the URL is copied into a log and lines of one route group), the status, the
duration and the request id: never a query string, a header value or a body, so no token and no
personal data. A client's ``X-Request-Id`` is kept when it is sane (up to 128 characters of
``[A-Za-z0-9._:-]``), else one is made; either way it is answered in ``X-Request-Id`` and named by
every log line written while the request is served. The operational routes (health, readiness,
metrics) are polled every few seconds and would drown the rest: they are logged at DEBUG.

Plain ASGI like ``runtime.http.RequestMetrics``: no request objects, no extra task per request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, use_span

from runtime.logs import request_id
from runtime.tracing import remote_context, tracer

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("egov.access")

REQUEST_ID = "x-request-id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
OPERATIONAL = frozenset({"/metrics", "/health", "/ready"})


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's request id if it is sane, else a new one."""
    for name, value in headers:
        if name == REQUEST_ID.encode():
            candidate = value.decode("latin-1")
            if SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        rid = request_id_of(headers)
        carrier = {n.decode("latin-1"): v.decode("latin-1") for n, v in headers if n in (b"traceparent", b"tracestate")}
        method = scope["method"]
        started = time.perf_counter()
        status = 500

        async def answered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID.encode(), rid.encode())]
            await send(message)

        token = request_id.set(rid)
        span = tracer.start_span(method, context=remote_context(carrier), kind=SpanKind.SERVER)
        with use_span(span, end_on_exit=True):  # the access line is written in the span: it names the trace
            try:
                await self.app(scope, receive, answered)
            finally:
                route = str(getattr(scope.get("route"), "path", "unmatched"))
                self._done(span, method, route, status, started)
                request_id.reset(token)

    @staticmethod
    def _done(span: Span, method: str, route: str, status: int, started: float) -> None:
        span.update_name(f"{method} {route}")
        span.set_attributes({"http.request.method": method, "http.route": route, "http.response.status_code": status})
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        log.log(
            logging.DEBUG if route in OPERATIONAL else logging.INFO,
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
