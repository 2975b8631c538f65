"""Repeated failed authentication is throttled per client address on intake, review and budget.

The four services run as real processes on 127.0.0.1. Clients bind their own source address
inside 127.0.0.0/8, so "another address" is a real other peer, not a forged header.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from runtime.credentials import new_token
from runtime.db import create_pool
from services.review import store as review_store
from tests.support import ADMIN_TOKEN, SERVICE_PORTS, ServiceProcesses

pytestmark = pytest.mark.integration

FAILURES_ALLOWED = 10  # the services' default http_auth_failure_limit
ROUTES = {"intake": "/v1/applications", "review": "/v1/cases", "budget": "/v1/fiscal-years"}


def client(source: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=source), timeout=10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def good_tokens(services: ServiceProcesses, service_dsns: dict[str, str], portal_token: str) -> dict[str, str]:
    caseworker = new_token("egc_")
    pool = await create_pool(service_dsns["review"])
    try:
        await review_store.save_caseworker_token(pool, "sb-throttle", caseworker)
    finally:
        await pool.close()
    return {"intake": portal_token, "review": caseworker, "budget": ADMIN_TOKEN}


async def throttled_then_recovers(service: str, good: str, attacker: str, neighbour: str) -> None:
    url = f"http://127.0.0.1:{SERVICE_PORTS[service]}{ROUTES[service]}"
    async with client(attacker) as bad, client(neighbour) as other:
        for _ in range(FAILURES_ALLOWED):
            assert (await bad.get(url, headers=bearer("egp_wrong"))).status_code == 401
        refused = await bad.get(url, headers=bearer("egp_wrong"))
        assert refused.status_code == 429, service
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "auth.throttled"
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 60
        # Before the token is looked at: the right one from this address waits too; so does a
        # request claiming, in a header nobody here trusts, to come from somewhere else.
        assert (await bad.get(url, headers=bearer(good))).status_code == 429
        spoofed = {**bearer(good), "X-Forwarded-For": "203.0.113.9"}
        assert (await bad.get(url, headers=spoofed)).status_code == 429
        # Another address is served as before, and its own failures are its own.
        served = await other.get(url, headers=bearer(good))
        assert served.status_code == 200, served.text
        assert (await other.get(url, headers=bearer("egp_wrong"))).status_code == 401
        assert (await bad.get(f"http://127.0.0.1:{SERVICE_PORTS[service]}/health")).status_code == 200
        await asyncio.sleep(wait + 0.2)
        assert (await bad.get(url, headers=bearer(good))).status_code == 200, "served again after Retry-After"


async def test_repeated_bad_tokens_get_429_per_address_on_every_service(good_tokens: dict[str, str]) -> None:
    await asyncio.gather(
        *(
            throttled_then_recovers(service, good_tokens[service], f"127.0.{i}.10", f"127.0.{i}.20")
            for i, service in enumerate(ROUTES, start=1)
        )
    )


async def test_authenticated_answers_carry_the_security_headers(good_tokens: dict[str, str]) -> None:
    async with client("127.0.0.1") as http:
        for service, path in ROUTES.items():
            answer = await http.get(
                f"http://127.0.0.1:{SERVICE_PORTS[service]}{path}", headers=bearer(good_tokens[service])
            )
            assert answer.status_code == 200, (service, answer.text)
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["cache-control"] == "no-store"
            assert "server" not in answer.headers
            assert len(answer.headers.get_list("date")) == 1
        for port in SERVICE_PORTS.values():
            health = await http.get(f"http://127.0.0.1:{port}/health")
            assert health.headers["x-content-type-options"] == "nosniff"
            assert "server" not in health.headers
