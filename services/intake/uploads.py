"""A portal uploads an announced attachment: streamed into the documents store, checked on the way.

The bytes go to the store a chunk at a time while they are counted and hashed; a mismatch with the
announcement (media type, size, digest) raises inside the store's writer, so nothing is kept. Only
a document that matched is recorded as the attachment's arrival. The same bytes again get the same
answer (the first arrival time); other bytes cannot match the announced digest, so they are refused.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from runtime.outbox import Outgoing, stage
from runtime.problems import Problem
from schemas.application import Attachment
from schemas.envelope import Envelope
from schemas.events import ApplicationCompleted, DocumentsSupplied
from schemas.topics import APPLICATIONS
from services.intake import store
from services.intake.documents import (
    Fingerprint,
    Mismatch,
    Refusal,
    before_reading,
    declared_digest,
    media_type_of,
    outstanding,
)
from services.intake.domain import STATUS_RANK
from services.intake.policy import FINAL_RANK
from services.intake.submission import SOURCE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection

    import asyncpg

    from runtime.outbox import OutboxRelay
    from schemas.rules import DocumentRules
    from services.intake.documents_store import DocumentStore
    from services.intake.policy import PortalAccess

# application.completed has an event id derived from the application: however it is reached, once;
# application.documents_supplied one derived from the request it answers.
COMPLETED_IDS = uuid.UUID("0f3b2f6e-5d0c-4a55-9f6a-3c1d2e7b8a15")
SUPPLIED_IDS = uuid.UUID("5a0e6c1b-7f2d-4e8a-b3c9-2d4f6a8b0c17")
STATUS_OF = {
    Mismatch.MEDIA_TYPE_NOT_ALLOWED: 415,
    Mismatch.MEDIA_TYPE_MISMATCH: 415,
    Mismatch.TOO_LARGE: 413,
    Mismatch.SIZE_MISMATCH: 422,
    Mismatch.DIGEST_MISMATCH: 422,
}


def arrived_document(row: asyncpg.Record, kinds: list[str]) -> Attachment:
    return Attachment(
        file_name=row["file_name"],
        media_type=row["media_type"],
        size_bytes=row["size_bytes"],
        kind=kinds[row["document"]],
        digest=row["digest"],
    )


def refused(refusal: Refusal) -> Problem:
    return Problem(
        STATUS_OF[refusal.mismatch],
        refusal.mismatch.value,
        "The upload is not the announced attachment",
        refusal.detail,
    )


def not_announced() -> Problem:
    return Problem(404, "attachment.not_found", "No such attachment announced by this portal's application")


@dataclass(frozen=True)
class StoredDocument:
    """An arrived attachment as the review service reads it: the announcement, and its bytes."""

    announced: Attachment
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class RequestedUpload:
    """What a portal declares about a requested document: nothing was announced, so the request's
    headers are the announcement (Content-Type, Content-Length, Content-Digest) and the bytes must match."""

    file_name: str
    content_type: str | None
    content_length: int | None
    content_digest: str | None

    def as_attachment(self, kind: str, allowed: Collection[str]) -> Attachment:
        media_type = media_type_of(self.content_type)
        if media_type not in allowed:
            raise refused(
                Refusal(Mismatch.MEDIA_TYPE_NOT_ALLOWED, f"{media_type or 'This'} is not a format the rules accept")
            )
        if self.content_length is None:
            raise Problem(411, "request.length_required", "Send Content-Length: the size is part of the check")
        digest = declared_digest(self.content_digest)
        if digest is None:
            raise Problem(400, "document.digest_required", "Send Content-Digest with a sha-256 or sha-512 digest")
        try:
            return Attachment(
                file_name=self.file_name,
                media_type=media_type,
                size_bytes=self.content_length,
                kind=kind,
                digest=digest,
            )
        except ValidationError:
            raise Problem(
                422, "document.invalid", "The file name or size is not acceptable (at most 100 MiB, no slashes)"
            ) from None


class Uploads:
    def __init__(
        self,
        pool: asyncpg.Pool,
        documents: DocumentStore,
        rules: DocumentRules,
        relay: OutboxRelay | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        appended: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool, self.documents, self.rules, self.relay, self.clock = pool, documents, rules, relay, clock
        # Told when an application.completed is staged: watermarks are due (watermarks.py).
        self.appended = appended

    async def announced(self, portal: PortalAccess, application_id: str, attachment: int) -> Attachment:
        """The attachment the upload must match; another portal's application is not found."""
        row = await store.announcement(self.pool, application_id, portal.portal_id)
        if row is None:
            raise Problem(404, "application.not_found", "No such application for this portal")
        announced = json.loads(row["attachments"])
        if not 0 <= attachment < len(announced):
            raise not_announced()
        if STATUS_RANK[row["status"]] >= FINAL_RANK:
            raise Problem(409, "application.closed", "The application is decided or withdrawn: no more uploads")
        return Attachment.model_validate(announced[attachment])

    async def receive(
        self,
        portal: PortalAccess,
        application_id: str,
        attachment: int,
        headers: tuple[str | None, int | None],
        body: AsyncIterator[bytes],
    ) -> dict[str, Any]:
        """``headers`` are the request's Content-Type and Content-Length (None if absent)."""
        announced = await self.announced(portal, application_id, attachment)
        refusal = before_reading(announced, *headers, self.rules.allowed_media_types)
        if refusal:
            raise refused(refusal)
        await self.store(announced, body)
        arrived_at = await self.arrival(portal, application_id, attachment, announced.digest)
        return {
            "application_id": application_id,
            "attachment": attachment,
            "file_name": announced.file_name,
            "kind": announced.kind,
            "media_type": announced.media_type,
            "size_bytes": announced.size_bytes,
            "digest": announced.digest,
            "arrived_at": arrived_at.isoformat(),
        }

    async def receive_requested(
        self,
        portal: PortalAccess,
        target: tuple[str, str, int],
        upload: RequestedUpload,
        body: AsyncIterator[bytes],
    ) -> dict[str, Any]:
        """``target``: application id, request id, the document's position in the request's kinds."""
        application_id, request_id, document = target
        row = await store.document_request(self.pool, request_id, application_id, portal.portal_id)
        if row is None:
            raise Problem(404, "document_request.not_found", "No such document request for this portal's application")
        kinds = json.loads(row["kinds"])
        if not 0 <= document < len(kinds):
            raise Problem(404, "document_request.not_found", "The request names no document at this position")
        if STATUS_RANK[row["status"]] >= FINAL_RANK:
            raise Problem(409, "application.closed", "The application is decided or withdrawn: no more uploads")
        announced = upload.as_attachment(kinds[document], self.rules.allowed_media_types)
        await self.store(announced, body)
        arrived_at = await self.requested_arrival(application_id, request_id, document, announced, kinds)
        return {
            "application_id": application_id,
            "request_id": request_id,
            "document": document,
            **announced.model_dump(mode="json"),
            "arrived_at": arrived_at.isoformat(),
        }

    async def requested_arrival(
        self, application_id: str, request_id: str, document: int, announced: Attachment, kinds: list[str]
    ) -> datetime:
        """Records the arrival; the last one stages application.documents_supplied in the same transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_document_request(conn, request_id)
            try:
                arrived_at, new = await store.record_requested_arrival(
                    conn, request_id, document, announced.model_dump(mode="json"), self.clock()
                )
            except store.DifferentDocument:
                raise Problem(
                    409, "document.already_supplied", "Another document arrived for this position already"
                ) from None
            arrived = [arrived_document(r, kinds) for r in await store.requested_arrivals(conn, request_id)]
            supplied = new and len(arrived) == len(kinds)
            if supplied:
                await store.answer_document_request(conn, request_id, arrived_at)
                await stage(conn, [self.documents_supplied(application_id, request_id, arrived, arrived_at)])
        if supplied and self.relay:
            self.relay.wake()
        return arrived_at

    @staticmethod
    def documents_supplied(application_id: str, request_id: str, documents: list[Attachment], at: datetime) -> Outgoing:
        event = DocumentsSupplied(
            application_id=application_id, request_id=request_id, supplied_at=at, documents=documents
        )
        envelope = Envelope.wrap(
            event,
            source=SOURCE,
            subject=application_id,
            causation_id=request_id,
            event_id=str(uuid.uuid5(SUPPLIED_IDS, request_id)),
            time=at,
        )
        return Outgoing(APPLICATIONS, application_id, envelope)

    async def stored_requested(self, application_id: str, request_id: str, document: int) -> StoredDocument | None:
        """A requested document's bytes once it arrived (verified against its declared digest); else None."""
        row = await store.requested_digest(self.pool, application_id, request_id, document)
        if row is None:
            return None
        kinds = json.loads(row["kinds"])
        announced = Attachment(
            file_name=row["file_name"],
            media_type=row["media_type"],
            size_bytes=row["size_bytes"],
            kind=kinds[document],
            digest=row["digest"],
        )
        return StoredDocument(announced, self.documents.read(row["digest"]))

    async def stored(self, application_id: str, attachment: int) -> StoredDocument | None:
        """The attachment's bytes once it arrived (verified against its announcement); else None."""
        row = await store.announcement_of(self.pool, application_id)
        announced = json.loads(row["attachments"]) if row else []
        if not 0 <= attachment < len(announced):
            return None
        digest = await store.arrived_digest(self.pool, application_id, attachment)
        if digest is None:
            return None
        return StoredDocument(Attachment.model_validate(announced[attachment]), self.documents.read(digest))

    async def store(self, announced: Attachment, body: AsyncIterator[bytes]) -> None:
        fingerprint = Fingerprint(announced)
        async with self.documents.storing(announced.digest) as writer:
            async for data in body:
                refusal = fingerprint.add(data)
                if refusal:
                    raise refused(refusal)  # the writer rolls back: nothing stored
                await writer.write(data)
            refusal = fingerprint.verdict()
            if refusal:
                raise refused(refusal)

    async def arrival(self, portal: PortalAccess, application_id: str, attachment: int, digest: str) -> datetime:
        """Records the arrival; the one that leaves nothing outstanding stages ``application.completed``
        in the same transaction, so the application is complete exactly once, at that time."""
        async with self.pool.acquire() as conn, conn.transaction():
            # Before the time is taken: the completion it may stage carries a place time (watermarks.py).
            await store.hold_watermark(conn)
            await store.lock_announcement(conn, application_id)
            arrived_at, new = await store.record_arrival(conn, application_id, attachment, digest, self.clock())
            completed = await self.completion(conn, portal, application_id, arrived_at) if new else None
            if completed:
                await stage(conn, [completed])
        if completed:
            self.appended()
            if self.relay:
                self.relay.wake()
        return arrived_at

    async def completion(
        self, conn: asyncpg.Connection, portal: PortalAccess, application_id: str, at: datetime
    ) -> Outgoing | None:
        row = await store.announcement(conn, application_id, portal.portal_id)
        announced = json.loads(row["attachments"]) if row else []
        arrived = {r["attachment"] for r in await store.arrivals(conn, application_id)}
        if outstanding(announced, arrived):
            return None
        event = ApplicationCompleted(application_id=application_id, completed_at=at, attachments=len(announced))
        envelope = Envelope.wrap(
            event,
            source=SOURCE,
            subject=application_id,
            actor=f"portal:{portal.portal_id}",
            event_id=str(uuid.uuid5(COMPLETED_IDS, application_id)),
            time=at,
        )
        return Outgoing(APPLICATIONS, application_id, envelope)
