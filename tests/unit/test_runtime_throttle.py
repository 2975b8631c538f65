"""The failed-authentication throttle: a sliding window per client address, on a fake clock."""

from __future__ import annotations

import pytest

from runtime.throttle import FailureThrottle, client_key

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_is_reached_only_by_failures_within_the_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, 60, clock=clock)
    for _ in range(2):
        throttle.failed("a")
        clock.now += 1
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(58)  # until the first failure is 60 s old
    assert throttle.retry_after_header("a") == "58"
    clock.now += 58
    assert throttle.retry_after("a") == 0, "the oldest failure left the window: one more try"
    throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(1)


def test_failures_of_one_address_do_not_throttle_another() -> None:
    throttle = FailureThrottle(2, 60, clock=Clock())
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") > 0
    assert throttle.retry_after("b") == 0


def test_old_failures_are_forgotten() -> None:
    clock = Clock()
    throttle = FailureThrottle(2, 10, clock=clock)
    throttle.failed("a")
    clock.now += 11
    throttle.failed("a")
    assert throttle.retry_after("a") == 0


def test_memory_is_bounded_by_forgetting_the_stalest_address() -> None:
    throttle = FailureThrottle(1, 60, clock=Clock(), max_keys=2)
    for key in ("a", "b", "c"):
        throttle.failed(key)
    assert throttle.retry_after("a") == 0
    assert throttle.retry_after("b") > 0
    assert throttle.retry_after("c") > 0


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    clock = Clock()
    throttle = FailureThrottle(1, 10, clock=clock)
    throttle.failed("a")
    clock.now += 9.7
    assert throttle.retry_after_header("a") == "1"


def test_clients_are_keyed_by_address_and_ipv6_by_its_64() -> None:
    assert client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::5") != client_key("2001:db8:1:2::5")
    assert client_key("::ffff:198.51.100.7") == "198.51.100.7"
