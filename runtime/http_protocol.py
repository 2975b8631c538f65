"""uvicorn's httptools protocol with deadlines for reading a request (slowloris).

uvicorn bounds only the idle time between requests (``timeout_keep_alive``); a client that
opens a connection and sends its headers a byte at a time, or never finishes its body, holds
the connection (a file descriptor, a slot under ``limit_concurrency``) for as long as it likes.
Here every request must have its headers within ``header_timeout`` of its first byte (of the
connection, for the first request) and its body within ``body_timeout`` after the headers;
otherwise the connection is closed, with a 408 if no response has begun. The deadline is a
single timer per connection, armed and cancelled in uvicorn's own parser callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runtime.metrics import HTTP_READ_TIMEOUTS

if TYPE_CHECKING:
    import asyncio

TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0

    _deadline: asyncio.TimerHandle | None = None
    _phase: str = "headers"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers", self.header_timeout)  # a connection that never sends a byte is bounded too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a new request on a kept-alive connection; the first one is armed already
            self._arm("headers", self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.pipeline:
            # Queued behind a running request with reading paused: it costs nothing meanwhile, and
            # must not be timed out for the time the request ahead of it takes.
            self._disarm()
        else:
            self._arm("body", self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        HTTP_READ_TIMEOUTS.labels(self._phase).inc()
        if self._phase == "headers":  # no request of this connection is being answered
            self.transport.write(TIMED_OUT)
        self.transport.close()


def deadline_protocol(header_timeout: float, body_timeout: float) -> type[DeadlineHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, which instantiates it per connection."""
    return type(
        "DeadlineHttpToolsProtocol",
        (DeadlineHttpToolsProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )
