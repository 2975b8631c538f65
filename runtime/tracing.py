"""Traces an operator can follow: one application's path intake -> review -> budget -> notify is one trace.

The HTTP request starts (or continues, from a portal's ``traceparent``) a server span; every record
produced carries the W3C ``traceparent`` of the span that produced it as a Kafka header; every consumer
continues that trace in a span per handled event, so what a handler stages in the outbox carries the
trace on. The outbox keeps the ``traceparent`` with the row, because the relay publishes after the
handler's span has ended.

Spans are exported over OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-only
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, with the exporter's standard environment variables;
otherwise they are made and dropped, and the ids still travel in logs and headers.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from opentelemetry.context import Context
    from opentelemetry.trace import Span

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_propagator = TraceContextTextMapPropagator()
tracer = trace.get_tracer("egov")


def configure_tracing(service: str) -> bool:
    """Install the SDK's tracer provider for this process; True when spans are exported over OTLP."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporting = any(os.environ.get(name) for name in OTLP_ENDPOINTS)
    if exporting:
        # Imported only when used: the exporter pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return exporting


def trace_headers() -> list[tuple[str, bytes]]:
    """The current span's W3C trace context as Kafka headers; none outside a trace."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return [(name, value.encode()) for name, value in carrier.items()]


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def remote_context(carrier: Mapping[str, str]) -> Context:
    """The trace a request's or record's ``traceparent`` continues (lower-case names); an empty context
    if there is none or it is malformed (the propagator ignores what does not parse)."""
    return _propagator.extract({name: carrier[name] for name in (TRACEPARENT, TRACESTATE) if name in carrier})


def record_context(headers: Iterable[tuple[str, bytes | None]]) -> Context:
    return remote_context(
        {name.lower(): value.decode("ascii", "replace") for name, value in headers if value is not None}
    )


@contextlib.contextmanager
def consuming(
    headers: Iterable[tuple[str, bytes | None]], *, consumer: str, topic: str | None, event_type: str, event_id: str
) -> Iterator[Span]:
    """The span of one handled event, a child of the span that produced its record."""
    with tracer.start_as_current_span(
        f"process {event_type}",
        context=record_context(headers),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic or "",
            "messaging.consumer.group.name": consumer,
            "messaging.message.id": event_id,
            "cloudevents.event_type": event_type,
        },
    ) as span:
        yield span


@contextlib.contextmanager
def within_record(headers: Iterable[tuple[str, bytes | None]]) -> Iterator[None]:
    """The record's trace as the current context, without a span of its own: for lines logged about
    the record after its handling span has ended."""
    token = otel_context.attach(record_context(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


def ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span as hex, for log lines; None outside a trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
