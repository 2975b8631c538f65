"""Which callback URLs notify may call: HTTPS to public addresses only (no SSRF into our network).

A registered URL is checked twice: at registration (``check_url``, then ``resolve_public`` on its
name) and again at every delivery, because a name can be re-pointed after registration (DNS
rebinding). ``address_refusal`` is the pure classification both use. With
``allow_loopback`` (development and test only) loopback addresses are accepted, also over plain
HTTP, for a receiver on this machine; every other non-public address stays refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the IP addresses (as text) the name stands for; injectable so tests need no DNS.
Resolve = Callable[[str, int], Awaitable[list[str]]]

CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Names that are internal by convention, whatever they resolve to today.
INTERNAL_NAMES = frozenset({"localhost", "localhost.localdomain", "metadata", "metadata.google.internal"})
INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan", ".intranet")


class DestinationRefused(ValueError):
    """The URL or an address it resolves to may not be called; the text is safe to record."""


def embedded_ipv4(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4, Teredo), else the address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour:
            return address.sixtofour
        if address.teredo:
            return address.teredo[1]
    return address


def address_refusal(address: Address, *, allow_loopback: bool = False) -> str | None:
    """Why notify must not connect to this address, or None if it is public."""
    address = embedded_ipv4(address)
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback and not allow_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (e.g. cloud metadata)"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "a shared (CGNAT) address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "a site-local address"),
        (address.is_private and not address.is_loopback, "a private address"),
        (address.is_reserved, "a reserved address"),
    )
    for refused, reason in checks:
        if refused:
            return reason
    if address.is_loopback or address.is_global:
        return None
    return "not a public address"


def name_refusal(host: str, *, allow_loopback: bool = False) -> str | None:
    """Why a host name is internal by convention (checked before any lookup), or None."""
    name = host.rstrip(".").lower()
    if allow_loopback and is_loopback_name(name):
        return None
    if name in INTERNAL_NAMES or name.endswith(INTERNAL_SUFFIXES) or "." not in name:
        return "an internal host name"
    return None


def is_loopback_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    literal: Address | None  # the host when it is an IP address; None for a name


def check_url(url: str, *, allow_loopback: bool = False) -> Target:
    """The parsed URL if its form may be registered and called, else DestinationRefused.
    Pure: a name's addresses are checked by ``resolve_public``."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise DestinationRefused("the callback URL needs a host")
    if parts.username or parts.password:
        raise DestinationRefused("the callback URL must not carry credentials")
    if parts.fragment:
        raise DestinationRefused("the callback URL must not carry a fragment")
    if parts.scheme not in ("https", "http"):
        raise DestinationRefused("the callback URL must use https")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused("the callback URL has an invalid port") from None
    literal = _literal(host)
    if literal is not None:
        reason = address_refusal(literal, allow_loopback=allow_loopback)
    else:
        reason = name_refusal(host, allow_loopback=allow_loopback)
    if reason:
        raise DestinationRefused(f"the callback URL points to {reason}")
    to_loopback = embedded_ipv4(literal).is_loopback if literal is not None else is_loopback_name(host)
    if parts.scheme == "http" and not (allow_loopback and to_loopback):
        raise DestinationRefused("the callback URL must use https (plain http only to loopback in development)")
    return Target(url, host, port, literal)


async def resolve_public(host: str, port: int, resolve: Resolve, *, allow_loopback: bool = False) -> list[str]:
    """The addresses the host stands for, if every one of them is public (one private answer
    among public ones is enough to refuse: the client may pick any). OSError when the name does
    not resolve now (which may pass); DestinationRefused when it points inside."""
    if _literal(host) is None:
        reason = name_refusal(host, allow_loopback=allow_loopback)
        if reason:
            raise DestinationRefused(f"the callback host is {reason}")
        addresses = await resolve(host, port)
    else:
        addresses = [host]
    if not addresses:
        raise OSError("the callback host has no address")
    for text in addresses:
        reason = address_refusal(_address(text), allow_loopback=allow_loopback)
        if reason:
            raise DestinationRefused(f"the callback host resolves to {reason}")
    if is_loopback_name(host) and not all(_is_loopback(a) for a in addresses):
        raise DestinationRefused("localhost must resolve to loopback only")
    return addresses


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _address(text: str) -> Address:
    return ipaddress.ip_address(text.split("%")[0])  # without an IPv6 zone ("fe80::1%eth0")


def _is_loopback(text: str) -> bool:
    return embedded_ipv4(_address(text)).is_loopback
