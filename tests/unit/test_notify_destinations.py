"""Which callback destinations notify may call: the pure address and URL checks."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from services.notify.destinations import DestinationRefused, Resolve, address_refusal, check_url, resolve_public
from services.notify.settings import NotifySettings

pytestmark = pytest.mark.unit

INSIDE = [
    "127.0.0.1",
    "127.9.9.9",
    "::1",
    "0.0.0.0",  # noqa: S104 - the address under test, nothing binds it
    "::",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"]


@pytest.mark.parametrize("address", INSIDE)
def test_addresses_inside_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_the_development_switch_admits_loopback_only() -> None:
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True) is None
    for address in ("10.0.0.1", "169.254.169.254", "0.0.0.0", "100.64.0.1"):  # noqa: S104
        assert address_refusal(ipaddress.ip_address(address), allow_loopback=True) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://portal.example/hooks",
        "http://127.0.0.1:9/hooks",
        "https://127.0.0.1/hooks",
        "https://[::1]/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:169.254.169.254]/",
        "https://10.0.0.8/hooks",
        "https://0.0.0.0/hooks",
        "https://localhost/hooks",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://printer.local/hooks",
        "https://intranet/hooks",
        "ftp://portal.example/hooks",
        "https://user:pw@portal.example/hooks",
        "https://portal.example/hooks#x",
        "https:///hooks",
    ],
)
def test_urls_refused_by_form(url: str) -> None:
    with pytest.raises(DestinationRefused, match="callback URL"):
        check_url(url)


def test_loopback_over_http_only_with_the_switch() -> None:
    assert check_url("http://127.0.0.1:9/hooks", allow_loopback=True).port == 9
    assert check_url("http://localhost:9/hooks", allow_loopback=True).host == "localhost"
    with pytest.raises(DestinationRefused, match="private"):
        check_url("http://10.0.0.1/hooks", allow_loopback=True)
    with pytest.raises(DestinationRefused):
        check_url("http://portal.example/hooks", allow_loopback=True)
    assert check_url("https://portal.example/hooks").port == 443


def dns(answers: dict[str, list[str]]) -> Resolve:
    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    return resolve


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    resolve = dns({"good.example": ["93.184.215.14"], "mixed.example": ["93.184.215.14", "10.0.0.1"]})
    assert await resolve_public("good.example", 443, resolve) == ["93.184.215.14"]
    with pytest.raises(DestinationRefused, match="private"):
        await resolve_public("mixed.example", 443, resolve)


async def test_localhost_must_resolve_to_loopback() -> None:
    with pytest.raises(DestinationRefused):
        await resolve_public("localhost", 80, dns({"localhost": ["93.184.215.14"]}), allow_loopback=True)
    assert await resolve_public("localhost", 80, dns({"localhost": ["127.0.0.1"]}), allow_loopback=True)


def test_the_loopback_switch_is_refused_in_production() -> None:
    real: dict[str, Any] = {
        "environment": "production",
        "database_url": "postgresql://notify:s3cr3t-x9@db/notify",
        "database_owner_url": "postgresql://notify_owner:s3cr3t-y7@db/notify",
        "database_sslmode": "verify-full",
        "kafka_username": "notify",
        "kafka_password": "s3cr3t-k4",
    }
    assert not NotifySettings.model_validate(real).allow_loopback_callbacks
    with pytest.raises(ValueError, match="allow_loopback_callbacks"):
        NotifySettings.model_validate({**real, "allow_loopback_callbacks": True})
