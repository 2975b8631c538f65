"""The two ways a notice leaves notify: e-mail over SMTP and a signed callback to the portal.

Each sender makes one attempt, bounded in time, and raises ``DeliveryError`` when it did not
land. The error's text is recorded and published, so it never contains personal data (an SMTP
server's reply can name the mailbox; we keep only its code) or secrets.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Protocol

import aiohttp
import aiosmtplib
from aiohttp.abc import AbstractResolver, ResolveResult

from services.notify import destinations, webhooks

if TYPE_CHECKING:
    import asyncpg

    from services.notify.settings import NotifySettings

MAX_ANSWER_BYTES = 64 * 1024


class DeliveryError(Exception):
    """One attempt failed; the message is safe to store, log and publish."""


class PermanentDeliveryError(DeliveryError):
    """Trying again cannot help (the destination is refused): the notice is given up at once."""


class Sender(Protocol):
    async def send(self, notice: asyncpg.Record) -> None: ...

    async def close(self) -> None: ...


def email_message(notice: asyncpg.Record, sender: str, sent_at: datetime | None = None) -> EmailMessage:
    """The notice id is the Message-ID: a copy sent again after a crash is recognisably the same mail.
    ``Date`` (required by RFC 5322) is the time of this attempt, not of the event: it is when the mail left."""
    message = EmailMessage()
    message["Date"] = format_datetime(sent_at or datetime.now(UTC))
    message["From"] = sender
    message["To"] = notice["email"]
    message["Subject"] = notice["subject"]
    message["Message-ID"] = f"<{notice['notice_id']}@{sender.rpartition('@')[2] or 'localhost'}>"
    message["X-Notice-Id"] = str(notice["notice_id"])
    message["X-Notice-Type"] = notice["notice_type"]
    if notice["application_id"]:
        message["X-Application-Id"] = notice["application_id"]
    message.set_content(notice["body_text"])
    message.add_alternative(notice["body_html"], subtype="html")
    return message


class EmailSender:
    def __init__(self, settings: NotifySettings) -> None:
        self._s = settings
        self._tls: ssl.SSLContext | None = None
        if settings.smtp_ca_file is not None:
            self._tls = ssl.create_default_context(cafile=str(settings.smtp_ca_file))

    async def send(self, notice: asyncpg.Record) -> None:
        s = self._s
        if not notice["email"]:
            raise DeliveryError("no recipient address known")
        try:
            async with asyncio.timeout(s.smtp_timeout_seconds):
                await aiosmtplib.send(
                    email_message(notice, s.mail_from),
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    use_tls=s.smtp_implicit_tls,
                    start_tls=s.smtp_starttls,  # False: never upgrade, even if offered; True: required
                    tls_context=self._tls,
                    username=s.smtp_username,
                    password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                    timeout=s.smtp_timeout_seconds,
                )
        except aiosmtplib.SMTPResponseException as err:
            raise DeliveryError(f"SMTP {err.code} ({type(err).__name__})") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise DeliveryError(f"SMTP {type(err).__name__}") from None

    async def close(self) -> None:
        return None


class CheckingResolver(AbstractResolver):
    """aiohttp asks this for the addresses of every new connection, and connects to exactly what
    it returns: the check and the connection use one lookup, so the connection is pinned to the
    addresses that passed and a rebinding DNS server gets no second, different answer in. The
    connector's DNS cache holds only checked answers, so a pooled or cached connection goes to a
    checked address too; a name re-pointed inside is refused at its next lookup.
    (aiohttp does not call a resolver for IP literals; ``check_url`` has checked those.)"""

    def __init__(self, resolve: destinations.Resolve, allow_loopback: bool) -> None:
        self._resolve, self._allow_loopback = resolve, allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await destinations.resolve_public(host, port, self._resolve, allow_loopback=self._allow_loopback)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class CallbackSender:
    """POSTs the stored body to the portal's registered URL. Redirects are not followed: only the
    registered URL is ever called. Only the status of the answer counts. The URL and the
    addresses its host has at the time are checked at every attempt (``destinations``); a
    refused one fails the notice permanently.

    aiohttp rather than httpx here: one notify talks to many portals at once, and httpx's pool
    slows down sharply past a few dozen connections (measured: 0.7 ms CPU per request at 4
    connections, 2.9 ms at 32; aiohttp 0.14 ms at either).
    """

    def __init__(self, settings: NotifySettings, resolve: destinations.Resolve = destinations.system_resolve) -> None:
        self._s = settings
        self._resolve = resolve
        self._session: aiohttp.ClientSession | None = None  # made in the running loop, on first use

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            s = self._s
            # Through a proxy the connector resolves only the proxy (which may well be private):
            # then ``send`` checks the destination's name itself, and the proxy connects on its
            # own lookup, so it must enforce the same egress rules (no pinning possible there).
            resolver = None if s.callback_proxy else CheckingResolver(self._resolve, s.allow_loopback_callbacks)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=s.max_in_flight, ttl_dns_cache=300, resolver=resolver),
                timeout=aiohttp.ClientTimeout(
                    total=s.callback_timeout_seconds, sock_connect=s.callback_connect_timeout_seconds
                ),
                trust_env=False,
                auto_decompress=False,
            )
        return self._session

    async def send(self, notice: asyncpg.Record) -> None:
        if not notice["url"]:
            raise DeliveryError("no active callback endpoint for the portal")
        allow_loopback = self._s.allow_loopback_callbacks
        try:
            target = destinations.check_url(notice["url"], allow_loopback=allow_loopback)
            if self._s.callback_proxy:
                await destinations.resolve_public(
                    target.host, target.port, self._resolve, allow_loopback=allow_loopback
                )
            await self._post(notice, target.url)  # CheckingResolver refuses at connect time
        except destinations.DestinationRefused as err:
            raise PermanentDeliveryError(f"callback endpoint refused: {err}") from None
        except OSError:  # the proxy case's own lookup
            raise DeliveryError("callback host did not resolve") from None

    async def _post(self, notice: asyncpg.Record, url: str) -> None:
        body = bytes(notice["callback_body"])
        headers = webhooks.headers(notice["secret"], str(notice["notice_id"]), int(time.time()), body)
        try:
            async with (
                asyncio.timeout(self._s.callback_timeout_seconds),
                self._client().post(
                    url, data=body, headers=headers, allow_redirects=False, proxy=self._s.callback_proxy
                ) as response,
            ):
                await _drain(response)
        except TimeoutError:
            raise DeliveryError("callback timed out") from None
        except aiohttp.ClientConnectorDNSError:
            raise DeliveryError("callback host did not resolve") from None
        except aiohttp.ClientConnectorError:
            raise DeliveryError("callback could not connect") from None
        except (aiohttp.ClientError, OSError) as err:
            raise DeliveryError(f"callback failed ({type(err).__name__})") from None
        if not 200 <= response.status < 300:
            raise DeliveryError(f"callback answered HTTP {response.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read what the portal answers, up to a bound: a fully read answer keeps its connection for
    the next callback; a portal answering with megabytes just loses it."""
    received = 0
    async for chunk in response.content.iter_any():
        received += len(chunk)
        if received > MAX_ANSWER_BYTES:
            response.close()
            return
