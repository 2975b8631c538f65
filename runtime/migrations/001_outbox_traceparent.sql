-- The W3C trace context of the span that staged an event, so the relay, publishing after that span
-- has ended, still carries the trace on in the record's traceparent header. Empty for rows staged
-- before tracing (and outside any trace): their records go without one.
ALTER TABLE outbox ADD COLUMN traceparent text;
