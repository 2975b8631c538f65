"""Throttling repeated failed authentication per client address (password spraying, token guessing).

``FailureThrottle`` is pure: a sliding window of failure times per key, with an injectable
clock. Memory is bounded: past ``max_keys`` the key that failed least recently is forgotten.
IPv6 clients are keyed by their /64, which one host or subscriber usually holds whole.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def client_key(host: str) -> str:
    """The address a client is throttled by: IPv4 as is, IPv6 by its /64 network."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureThrottle:
    """At most ``limit`` failures per key in any ``window_seconds``; then the key waits until
    its oldest failure in the window has aged out."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.limit, self.window, self._clock, self._max_keys = limit, window_seconds, clock, max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float:
        """Seconds until the key may try again; 0 when it may now."""
        times = self._failures.get(key)
        if times is None:
            return 0.0
        self._expire(times, self._clock())
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window - self._clock())

    def failed(self, key: str) -> None:
        now = self._clock()
        times = self._failures.pop(key, None) or deque()
        self._expire(times, now)
        times.append(now)
        while len(times) > self.limit:  # only the newest `limit` decide when it may try again
            times.popleft()
        self._failures[key] = times  # now the most recent
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def retry_after_header(self, key: str) -> str:
        """The Retry-After value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after(key))))

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()
