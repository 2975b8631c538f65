"""The runtime's HTTP server, started in this process on 127.0.0.1 with short bounds: slow
clients are cut off, answers carry the security headers, failed authentication is throttled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Header

from runtime.http import HttpLimits, HttpServer, add_operational_routes, install_guards
from runtime.problems import Problem, install_problem_handlers
from runtime.settings import ServiceSettings

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 200
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0


def make_app(settings: ServiceSettings) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/v1/mine")
    async def mine(authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
        if authorization != "Bearer good":
            raise Problem(401, "auth.required", "A token is required")
        return {"mine": "yes"}

    @app.post("/v1/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    install_guards(app, settings)
    add_operational_routes(app, {})
    return app


@pytest.fixture
async def server(unused_tcp_port: int) -> AsyncIterator[str]:
    settings = ServiceSettings(http_auth_failure_limit=3, http_auth_failure_window_seconds=30)
    limits = HttpLimits(HEADER_TIMEOUT, BODY_TIMEOUT, trusted_proxies=("127.0.0.1",))
    http = HttpServer(make_app(settings), "127.0.0.1", unused_tcp_port, limits)
    await http.start()
    try:
        yield f"127.0.0.1:{unused_tcp_port}"
    finally:
        await http.stop()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]  # the writer kept: dropping it closes


async def slow_client(address: str, partial: bytes) -> Connection:
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(partial)
    await writer.drain()
    return reader, writer


async def closed_within(connection: Connection, seconds: float) -> bytes:
    """What the server sent before closing, if it closed within the time; else TimeoutError."""
    reader, writer = connection
    try:
        return await asyncio.wait_for(reader.read(), timeout=seconds)
    finally:
        writer.close()


async def test_slow_clients_are_cut_off_and_do_not_starve_a_valid_request(server: str) -> None:
    partial = b"GET /v1/mine HTTP/1.1\r\nHost: x\r\nX-Slow: "  # headers that never end
    slow = await asyncio.gather(*(slow_client(server, partial) for _ in range(SLOW_CLIENTS)))
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.get(f"http://{server}/v1/mine", headers={"Authorization": "Bearer good"})
    assert answer.status_code == 200
    assert time.monotonic() - started < 0.5, "a valid request waited behind the slow ones"
    answers = await asyncio.gather(*(closed_within(r, HEADER_TIMEOUT + 3) for r in slow))
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), "every slow connection is closed with a 408"
    assert time.monotonic() - started >= HEADER_TIMEOUT - 0.3


async def test_a_connection_that_sends_nothing_is_closed(server: str) -> None:
    connection = await slow_client(server, b"")
    assert (await closed_within(connection, HEADER_TIMEOUT + 3)).startswith(b"HTTP/1.1 408")


async def test_a_body_that_never_arrives_in_full_is_cut_off(server: str) -> None:
    partial = b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    connection = await slow_client(server, partial)
    started = time.monotonic()
    assert await closed_within(connection, BODY_TIMEOUT + 3) == b"", "closed; the request is abandoned"
    assert time.monotonic() - started >= BODY_TIMEOUT - 0.3


async def test_a_kept_alive_connection_is_timed_per_request(server: str) -> None:
    reader, writer = await asyncio.open_connection(*server.split(":"))
    for _ in range(3):  # each whole request in time: served, the connection stays
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readexactly(len(b'{"status":"alive"}'))
        await asyncio.sleep(HEADER_TIMEOUT * 0.6)  # together longer than one bound
    writer.write(b"GET /health HTTP/1.1\r\n")  # and then one that stalls
    assert (await closed_within((reader, writer), HEADER_TIMEOUT + 3)).startswith(b"HTTP/1.1 408")


async def test_answers_carry_the_security_headers(server: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}", timeout=5) as http:
        mine = await http.get("/v1/mine", headers={"Authorization": "Bearer good"})
        refused = await http.get("/v1/mine", headers={"Authorization": "Bearer nope"})
        health = await http.get("/health")
    for answer in (mine, refused, health):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "server" not in answer.headers
        assert len(answer.headers.get_list("date")) == 1
    assert mine.headers["cache-control"] == "no-store"
    assert refused.headers["cache-control"] == "no-store"
    assert "cache-control" not in health.headers


async def test_failed_authentication_is_throttled_per_forwarded_client(server: str) -> None:
    """Here 127.0.0.1 is a trusted proxy, so X-Forwarded-For names the client."""
    async with httpx.AsyncClient(base_url=f"http://{server}", timeout=5) as http:

        async def mine(client: str, token: str) -> httpx.Response:
            return await http.get("/v1/mine", headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": client})

        for _ in range(3):
            assert (await mine("198.51.100.7", "nope")).status_code == 401
        throttled = await mine("198.51.100.7", "good")
        assert throttled.status_code == 429
        assert throttled.headers["content-type"] == "application/problem+json"
        assert throttled.json()["code"] == "auth.throttled"
        assert 1 <= int(throttled.headers["retry-after"]) <= 30
        assert throttled.headers["x-content-type-options"] == "nosniff"
        assert (await mine("198.51.100.8", "good")).status_code == 200
        assert (await mine("2001:db8:1:2::5", "nope")).status_code == 401
