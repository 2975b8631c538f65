-- The W3C trace context of the span that staged an event, so the relay, publishing after that span
-- has ended, still carries the trace on in the record's traceparent header. Empty for rows staged
-- before tracing (and outside any trace): their records go without one.
ALTER TABLE outbox ADD COLUMN traceparent text;

-- The trace each handled event's record named, by event id: work done later for that event (the
-- budget line deciding a place, notify reporting a delivery) stages events outside the handler's
-- span, and continues the trace of their cause (the envelope's causationid) from here.
CREATE TABLE event_traces (
    event_id    text PRIMARY KEY,
    traceparent text NOT NULL
);
