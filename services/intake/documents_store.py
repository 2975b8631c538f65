"""Where uploaded documents live: a small interface, and its PostgreSQL implementation (the default).

Content addressed: a document is stored under its digest, once however many applications announce
it. A write is all or nothing: the bytes are streamed in, and only a writer that is closed without an
error leaves a document behind, so a caller that finds a mismatch at the end raises and nothing is
stored. An S3-compatible object store fits the same interface (a multipart upload under the digest,
completed on a clean exit, aborted on an error; ``read`` a ranged or streamed GET).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import asyncpg

# A chunk is one bytea value: small enough that a write or a read holds little in memory, large
# enough that a 100 MiB document is a hundred rows, not thousands.
CHUNK_BYTES = 1024 * 1024


class DocumentWriter(Protocol):
    async def write(self, data: bytes) -> None: ...


class DocumentStore(Protocol):
    def storing(self, digest: str) -> contextlib.AbstractAsyncContextManager[DocumentWriter]:
        """A writer for the document with this (announced) digest: kept on a clean exit, dropped on an
        error. If the document is stored already, the bytes written are discarded."""
        ...

    def read(self, digest: str) -> AsyncIterator[bytes]:
        """The document's bytes in order, a chunk at a time; nothing if it is not stored."""
        ...

    async def size(self, digest: str) -> int | None:
        """The stored document's size, None if it is not stored."""
        ...


class _ChunkWriter:
    """Collects streamed bytes into chunks of CHUNK_BYTES and inserts each as it fills."""

    def __init__(self, conn: asyncpg.Connection, digest: str, *, discard: bool) -> None:
        self.conn, self.digest, self.discard = conn, digest, discard
        self.pending = bytearray()
        self.chunks = 0
        self.size = 0

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.discard:
            return
        self.pending.extend(data)
        while len(self.pending) >= CHUNK_BYTES:
            await self._insert(bytes(self.pending[:CHUNK_BYTES]))
            del self.pending[:CHUNK_BYTES]

    async def finish(self) -> None:
        if self.discard:
            return
        if self.pending:
            await self._insert(bytes(self.pending))
            self.pending.clear()
        await self.conn.execute(
            "INSERT INTO documents (digest, size_bytes, chunk_count) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            self.digest,
            self.size,
            self.chunks,
        )

    async def _insert(self, chunk: bytes) -> None:
        # A concurrent upload of the same new document waits here for the other transaction, then
        # finds the chunk written (or, if that one rolled back, writes it itself).
        await self.conn.execute(
            "INSERT INTO document_chunks (digest, seq, bytes) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            self.digest,
            self.chunks,
            chunk,
        )
        self.chunks += 1


class PostgresDocuments:
    """Documents in intake's own database (migration 007): one transaction per upload."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def storing(self, digest: str) -> AsyncIterator[DocumentWriter]:
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval("SELECT true FROM documents WHERE digest = $1", digest)
            writer = _ChunkWriter(conn, digest, discard=bool(stored))
            yield writer  # an exception from the caller rolls the chunks back
            await writer.finish()

    async def read(self, digest: str) -> AsyncIterator[bytes]:
        # One chunk per query, so a reader holds one chunk at a time however large the document is.
        count = await self.pool.fetchval("SELECT chunk_count FROM documents WHERE digest = $1", digest)
        for seq in range(count or 0):
            chunk: bytes = await self.pool.fetchval(
                "SELECT bytes FROM document_chunks WHERE digest = $1 AND seq = $2", digest, seq
            )
            yield chunk

    async def size(self, digest: str) -> int | None:
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            "SELECT size_bytes FROM documents WHERE digest = $1", digest
        )
