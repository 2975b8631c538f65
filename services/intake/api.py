"""The portal-facing HTTP API: submit an application, read its status.

A submission answers 202 only after the broker acknowledged ``application.received``.
"""

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse

from runtime.kafka import publish
from runtime.problems import Problem, install_problem_handlers
from schemas.application import FundingApplication
from schemas.envelope import Envelope
from schemas.events import ApplicationReceived
from schemas.rules import Rules
from schemas.topics import APPLICATIONS
from services.intake import store
from services.intake.domain import application_id, validate_application
from services.intake.settings import IntakeSettings

SOURCE = "/egov/intake"
RETRY_AFTER_SECONDS = "5"


class Intake:
    """What the routes need, passed in by the composition root."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, rules: Rules, settings: IntakeSettings) -> None:
        self.pool, self.producer, self.rules, self.settings = pool, producer, rules, settings

    async def portal(self, authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                401,
                "auth.required",
                "A portal token is required",
                headers={"WWW-Authenticate": 'Bearer realm="egov-intake"'},
            )
        portal_id = await store.portal_for_token(self.pool, token.strip())
        if portal_id is None:
            raise Problem(
                401,
                "auth.invalid_token",
                "The portal token is unknown or revoked",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return portal_id

    async def read_body(self, request: Request) -> bytes:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise Problem(415, "request.unsupported_media_type", "Send the application as application/json")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.settings.max_body_bytes:
            raise Problem(413, "request.too_large", f"The body exceeds {self.settings.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > self.settings.max_body_bytes:
                raise Problem(413, "request.too_large", f"The body exceeds {self.settings.max_body_bytes} bytes")
        return bytes(body)

    def receipt(self, app_id: str, received_at: datetime, category_open: bool) -> dict[str, Any]:
        return {
            "application_id": app_id,
            "status": "received",
            "received_at": received_at.isoformat(),
            "status_url": f"{self.settings.public_base_url}/v1/applications/{app_id}",
            "category_open": category_open,
            "category_notice": None
            if category_open
            else "This category is currently paused: the application is kept and waits until funds are released.",
        }

    async def publish_received(
        self, portal_id: str, application: FundingApplication, app_id: str, event_id: str, received_at: datetime
    ) -> dict[str, Any]:
        """Publish and wait for acks=all; the same ids on a retry make the same event."""
        category = self.rules.category(application.project.category)
        category_open = bool(category and category.open)
        event = ApplicationReceived(
            application_id=app_id,
            portal_id=portal_id,
            received_at=received_at,
            category_open=category_open,
            application=application,
        )
        envelope = Envelope.wrap(
            event, source=SOURCE, subject=app_id, actor=f"portal:{portal_id}", event_id=event_id, time=received_at
        )
        try:
            await asyncio.wait_for(
                publish(self.producer, APPLICATIONS, app_id, envelope), self.settings.publish_timeout_ms / 1000
            )
        except (KafkaError, TimeoutError) as err:
            raise Problem(
                503,
                "broker.unavailable",
                "The submission could not be queued; retry later",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ) from err
        await store.upsert_status(
            self.pool,
            application_id=app_id,
            portal_id=portal_id,
            applicant_ags=application.applicant.ags,
            category=application.project.category,
            amount_cents=application.project.requested_amount_cents,
            received_at=received_at,
        )
        return self.receipt(app_id, received_at, category_open)

    async def submit(self, request: Request, portal_id: str, idempotency_key: str | None) -> JSONResponse:
        body = await self.read_body(request)
        # The receipt time is taken on acceptance, before queueing: first come, first served builds on it.
        received_at = datetime.now(UTC)
        result = validate_application(body, self.rules)
        if not isinstance(result, FundingApplication):
            raise Problem(
                422,
                "application.invalid",
                "The application is invalid",
                f"{len(result)} problem(s) found",
                errors=result,
            )
        app_id = application_id(received_at, await store.next_application_number(self.pool))
        event_id = str(uuid.uuid4())
        if idempotency_key is None:
            return accepted(await self.publish_received(portal_id, result, app_id, event_id, received_at))
        digest = hashlib.sha256(body).digest()
        claim = await store.claim_idempotency_key(
            self.pool, portal_id, idempotency_key, digest, app_id, event_id, received_at
        )
        if claim["body_sha256"] != digest:
            raise Problem(409, "idempotency.key_reused", "This Idempotency-Key was used with another body")
        if claim["application_id"] != app_id:
            return accepted(await self.await_original(portal_id, idempotency_key, result))
        receipt = await self.publish_received(portal_id, result, app_id, event_id, received_at)
        await store.store_response(self.pool, portal_id, idempotency_key, receipt)
        return accepted(receipt)

    async def await_original(self, portal_id: str, key: str, application: FundingApplication) -> dict[str, Any]:
        """Another request holds this key: return its answer, or finish its publish if it failed."""
        patience = self.settings.publish_timeout_ms / 1000 + 1
        while True:
            record = await store.idempotency_record(self.pool, portal_id, key)
            assert record is not None, "idempotency records are never deleted"
            if record["response"] is not None:
                return dict(json.loads(record["response"]))
            if (datetime.now(UTC) - record["created_at"]).total_seconds() > patience:
                break  # the original request gave up (503); finish its work with its ids
            await asyncio.sleep(0.05)
        receipt = await self.publish_received(
            portal_id, application, record["application_id"], record["event_id"], record["received_at"]
        )
        await store.store_response(self.pool, portal_id, key, receipt)
        return receipt


def accepted(receipt: dict[str, Any]) -> JSONResponse:
    return JSONResponse(receipt, status_code=202, headers={"Location": receipt["status_url"]})


def build_api(intake: Intake) -> FastAPI:
    app = FastAPI(
        title="Thüringen E-Government funding: application intake",
        version="1.0.0",
        description="Municipal portals submit funding applications and follow their status.",
    )
    install_problem_handlers(app)
    Portal = Annotated[str, Depends(intake.portal)]

    @app.post("/v1/applications", status_code=202, summary="Submit a funding application")
    async def submit(
        request: Request,
        portal_id: Portal,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        return await intake.submit(request, portal_id, idempotency_key)

    @app.get("/v1/applications/{application_id}", summary="Status and timeline of one application")
    async def status(application_id: str, portal_id: Portal) -> dict[str, Any]:
        view = await store.application_view(intake.pool, application_id, portal_id)
        if view is None:
            raise Problem(404, "application.not_found", "No such application for this portal")
        return view

    return app
