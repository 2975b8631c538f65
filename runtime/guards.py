"""ASGI guards every service's HTTP edge wears: response security headers, and throttling of
clients that keep failing authentication.

Both are plain ASGI (no request objects, no extra task per request), installed by
``ServiceKit.serve_http`` around the whole app, the operational routes included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import MutableHeaders

from runtime.metrics import HTTP_AUTH_THROTTLED
from runtime.problems import Problem
from runtime.throttle import FailureThrottle, client_key

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Probes and scrapes carry no credentials; they must work whatever a neighbour on the same address did.
UNTHROTTLED = frozenset({"/metrics", "/health", "/ready"})


class SecurityHeaders:
    """``X-Content-Type-Options: nosniff`` on every answer (a JSON answer is never sniffed into
    HTML); ``Cache-Control: no-store`` on every answer to a request carrying credentials, so no
    shared or browser cache keeps a portal's or caseworker's data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        credentials = any(name == b"authorization" for name, _ in scope["headers"])

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-content-type-options"] = "nosniff"
                if credentials:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, guarded_send)


class AuthFailureThrottle:
    """A client address that was answered 401 ``limit`` times within the window gets 429 with
    ``Retry-After`` for every request until the window lets it try again, before the app (and
    its token check, a database look-up) sees the request. Counting the app's 401 answers means
    each service's own authentication needs no change to be covered. The address is the peer's,
    or the forwarded one only from proxies in ``http_trusted_proxies``; it is never logged."""

    def __init__(self, app: ASGIApp, throttle: FailureThrottle) -> None:
        self.app, self.throttle = app, throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTHROTTLED:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client_key(client[0]) if client else "unknown"
        if self.throttle.retry_after(key) > 0:
            HTTP_AUTH_THROTTLED.inc()
            problem = Problem(
                429,
                "auth.throttled",
                "Too many failed authentication attempts",
                "This address is throttled after repeated failed authentication; retry after the given time.",
                headers={"Retry-After": self.throttle.retry_after_header(key)},
            )
            await problem.response(scope["path"])(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.throttle.failed(key)
            await send(message)

        await self.app(scope, receive, counting_send)
