"""The HTTP edge every service has: health, readiness, /metrics, request metrics, the guards
(security headers, failed-authentication throttle) and the server with its read deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.accesslog import AccessLog
from runtime.guards import AuthFailureThrottle, SecurityHeaders
from runtime.http_protocol import deadline_protocol
from runtime.metrics import HTTP_REQUESTS, HTTP_SECONDS
from runtime.settings import ServiceSettings
from runtime.throttle import FailureThrottle

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]


def add_operational_routes(app: FastAPI, checks: Mapping[str, ReadinessCheck]) -> None:
    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        results = {name: await _safe(check) for name, check in checks.items()}
        status = 200 if all(results.values()) else 503
        return JSONResponse({"ready": status == 200, "checks": results}, status_code=status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestMetrics)
    app.add_middleware(AccessLog)  # outermost: every answer, the throttle's 429s too, is logged and traced


UNOBSERVED = frozenset({"/metrics", "/health", "/ready"})


class RequestMetrics:
    """Counts and times every request by route template, as plain ASGI: no request objects, no
    extra task per request (a BaseHTTPMiddleware costs about 0.3 ms of CPU per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = scope.get("route")
            label = str(getattr(route, "path", "unmatched"))
            if label not in UNOBSERVED:
                HTTP_REQUESTS.labels(scope["method"], label, str(status)).inc()
                HTTP_SECONDS.labels(scope["method"], label).observe(time.perf_counter() - started)


async def _safe(check: ReadinessCheck) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=2.0)
    except Exception:
        # Whatever the check raised (a dead pool, a broker timeout), the answer is "not ready".
        log.warning("readiness check failed", extra={"check": getattr(check, "__name__", "?")}, exc_info=True)
        return False


class _EmbeddedServer(uvicorn.Server):
    # The service's lifecycle owns SIGTERM; uvicorn must not install its own handlers.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    # uvicorn answers 503 once open connections *or* running requests reach this. Idle connections
    # count, so a low value would hand a slow client an easy 503 for everyone: the read deadlines
    # are what free connections, and this only bounds memory and file descriptors well below the
    # usual 1024-65536 descriptor limits, far above what the portals' rate limits let through.
    limit_concurrency: int = 1000
    trusted_proxies: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: ServiceSettings) -> HttpLimits:
        return cls(
            settings.http_header_timeout_seconds,
            settings.http_body_timeout_seconds,
            settings.http_limit_concurrency,
            tuple(settings.http_trusted_proxies),
        )


def install_guards(app: FastAPI, settings: ServiceSettings) -> None:
    """Security headers on every answer, and the failed-authentication throttle."""
    throttle = FailureThrottle(settings.http_auth_failure_limit, settings.http_auth_failure_window_seconds)
    app.add_middleware(AuthFailureThrottle, throttle=throttle)
    app.add_middleware(SecurityHeaders)  # outermost: the throttle's 429s carry the headers too


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int, limits: HttpLimits | None = None) -> None:
        limits = limits or HttpLimits()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=deadline_protocol(limits.header_timeout_seconds, limits.body_timeout_seconds),
            ws="none",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
            server_header=False,  # no product banner; uvicorn's Date header stays, apps set none
            limit_concurrency=limits.limit_concurrency,
            # The kernel's accept queue, capped by net.core.somaxconn: uvicorn's default of 2048
            # absorbs a burst of new connections; those beyond it are refused by the kernel, cheaply.
            backlog=2048,
            proxy_headers=bool(limits.trusted_proxies),
            forwarded_allow_ips=list(limits.trusted_proxies) or None,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish."""
        self._server.should_exit = True
        if self._task:
            await self._task
