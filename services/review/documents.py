"""Caseworkers read an application's documents: review streams them through from intake.

Intake owns the documents (its database, its store); review never reaches into it. It asks intake's
internal route with its own service credential and passes the bytes on a chunk at a time, so neither
service holds a whole document in memory, and only a caseworker's request (checked by review) gets
them: a portal has no route to them at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def content_disposition(file_name: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact one (RFC 6266, RFC 8187)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in file_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


@dataclass(frozen=True)
class Download:
    """An open stream of one document: iterate ``chunks`` once; it closes itself at the end."""

    chunks: AsyncIterator[bytes]
    repr_digest: str | None


class DocumentUnavailable(Exception):
    """Intake has no such arrived document (404), or could not be reached."""

    def __init__(self, status: int) -> None:
        super().__init__(f"intake answered {status}")
        self.status = status


class IntakeDocuments:
    """The documents as intake serves them to the review service."""

    def __init__(self, base_url: str, token: str, timeout_seconds: float = 30.0) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_seconds, connect=5.0),
        )

    async def open(self, application_id: str, position: int) -> Download:
        """An announced attachment's bytes, as a stream; raises DocumentUnavailable before any byte."""
        return await self._open(f"/internal/v1/applications/{application_id}/attachments/{position}")

    async def open_requested(self, application_id: str, request_id: str, document: int) -> Download:
        """A document supplied on request, likewise."""
        return await self._open(
            f"/internal/v1/applications/{application_id}/requests/{request_id}/documents/{document}"
        )

    async def _open(self, path: str) -> Download:
        try:
            response = await self.client.send(self.client.build_request("GET", path), stream=True)
        except httpx.HTTPError as error:
            raise DocumentUnavailable(502) from error
        if response.status_code != 200:
            await response.aclose()
            raise DocumentUnavailable(404 if response.status_code == 404 else 502)
        return Download(self._relay(response), response.headers.get("repr-digest"))

    @staticmethod
    async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.client.aclose()
