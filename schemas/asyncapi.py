"""The AsyncAPI 3.0 document for every topic, built from the topic registry.

Each topic is a channel (address, key, retention, the one service that writes
it, whether it is public) with one message per event type; a message's payload
is the CloudEvents envelope whose ``data`` is the event's JSON Schema in
``schemas/json/``. ``python -m schemas.generate`` writes it to
``schemas/asyncapi.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas.topics import ALL_TOPICS, Topic

if TYPE_CHECKING:
    from schemas.envelope import Event

ASYNCAPI_VERSION = "3.0.0"
CONTRACT_VERSION = "1.0.0"
KAFKA_BINDING = "0.5.0"
# The dialect schemas.generate declares in every schema's $schema.
JSON_SCHEMA_FORMAT = "application/schema+json;version=2020-12"
# CloudEvents Kafka protocol binding, structured content mode (runtime.kafka).
STRUCTURED_JSON = "application/cloudevents+json; charset=UTF-8"
DEAD_LETTER = "deadletter"


def document() -> dict[str, Any]:
    messages: dict[str, Any] = {DEAD_LETTER: dead_letter_message()}
    for topic in ALL_TOPICS:
        messages.update({cls.event_type: event_message(cls, topic) for cls in topic.event_types})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Thüringen E-Government funding: events",
            "version": CONTRACT_VERSION,
            "description": (
                "Every topic of the grant intake backend. Each topic has one writer; events of one application "
                "share its key. Only public channels are a contract for systems outside the backend: see "
                "docs/consumer-guide.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:19092", "protocol": "kafka", "description": "Development broker (make run)"}
        },
        "channels": {topic.name: channel(topic) for topic in ALL_TOPICS},
        "operations": {
            **{f"{topic.writer}-writes-{topic.name}": operation(topic) for topic in ALL_TOPICS},
            **{
                f"{reader}-receives-{topic.name}": receiving(topic, reader)
                for topic in ALL_TOPICS
                for reader in topic.readers
            },
        },
        "components": {"messages": messages},
    }


def message_ids(topic: Topic) -> list[str]:
    return [cls.event_type for cls in topic.event_types] or [DEAD_LETTER]


def channel(topic: Topic) -> dict[str, Any]:
    return {
        "address": topic.name,
        "title": topic.name,
        "description": topic.description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in message_ids(topic)},
        "tags": [{"name": "public" if topic.public else "internal"}],
        "x-key": topic.key,
        "x-writer": topic.writer,
        "x-readers": list(topic.readers),
        "x-public": topic.public,
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": topic.partitions,
                "topicConfiguration": {"cleanup.policy": ["delete"], "retention.ms": topic.retention_ms},
                **({"x-message.timestamp.type": "LogAppendTime"} if topic.broker_timestamps else {}),
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def operation(topic: Topic) -> dict[str, Any]:
    return {
        "action": "send",
        "title": f"{topic.name}, written by {topic.writer}",
        "channel": {"$ref": f"#/channels/{topic.name}"},
        "messages": [{"$ref": f"#/channels/{topic.name}/messages/{m}"} for m in message_ids(topic)],
        "x-writer": topic.writer,
    }


def receiving(topic: Topic, reader: str) -> dict[str, Any]:
    """One service that consumes the topic (auditors and, on public topics, downstream systems read too)."""
    return {
        "action": "receive",
        "title": f"{topic.name}, read by {reader}",
        "channel": {"$ref": f"#/channels/{topic.name}"},
        "messages": [{"$ref": f"#/channels/{topic.name}/messages/{m}"} for m in message_ids(topic)],
        "x-reader": reader,
    }


def event_message(cls: type[Event], topic: Topic) -> dict[str, Any]:
    data = {"$ref": f"./json/{cls.event_type}.json"}
    fixed: dict[str, Any] = {"type": {"const": cls.wire_type()}, "data": data}
    if topic.public:
        fixed.update(SIGNATURE_PROPERTIES)
    return {
        "name": cls.wire_type(),
        "title": cls.__name__,
        "summary": (cls.__doc__ or cls.__name__).split("\n")[0].strip(),
        "contentType": STRUCTURED_JSON,
        "headers": message_headers(cls, topic),
        "correlationId": {"location": "$message.payload#/correlationid"},
        "payload": {
            "schemaFormat": JSON_SCHEMA_FORMAT,
            "schema": {
                "allOf": [{"$ref": "./json/envelope.json"}, {"type": "object", "properties": fixed}],
            },
        },
        "bindings": {"kafka": {"key": {"type": "string", "description": topic.key}, "bindingVersion": KAFKA_BINDING}},
    }


def message_headers(cls: type[Event], topic: Topic) -> dict[str, Any]:
    """The CloudEvents structured-mode content type, routing hints, the trace context, and the headers a
    topic demands of every record (a portal's signature)."""
    properties: dict[str, Any] = {
        "content-type": {
            "type": "string",
            "const": STRUCTURED_JSON,
            "description": "CloudEvents Kafka binding, structured mode: the value is the whole envelope "
            "(absent on records written before it was declared)",
        },
        "ce_type": {"type": "string", "const": cls.wire_type(), "description": "The envelope's type, for routing"},
        "ce_id": {"type": "string", "description": "The envelope's id"},
        "traceparent": {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C Trace Context of the span that produced the record; one trace per application",
        },
    }
    properties.update({name: {"type": "string", "description": about} for name, about in topic.required_headers})
    headers: dict[str, Any] = {"type": "object", "properties": properties}
    if topic.required_headers:
        headers["required"] = [name for name, _ in topic.required_headers]
    return headers


SIGNATURE_PROPERTIES: dict[str, Any] = {
    "signature": {
        "type": "string",
        "description": "CloudEvents extension: base64 Ed25519 signature over the canonical envelope "
        "(sorted-key JSON without signature and signingkeyid); see docs/consumer-guide.md",
    },
    "signingkeyid": {"type": "string", "description": "CloudEvents extension: id of the published signing key"},
}


def dead_letter_message() -> dict[str, Any]:
    return {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A record its consumer could not decode or handle: the original bytes, key and headers.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "properties": {
                "dlq_reason": {"type": "string", "enum": ["undecodable", "invalid_payload", "handler_error"]},
                "dlq_detail": {"type": "string", "description": "Why, at most 2000 characters"},
                "dlq_origin": {"type": "string", "description": "topic/partition/offset of the original record"},
                "dlq_consumer": {"type": "string", "description": "The consumer that gave up on it"},
            },
        },
        "payload": {"description": "The original record value, byte for byte"},
        "bindings": {
            "kafka": {"key": {"type": "string", "description": "The original key"}, "bindingVersion": KAFKA_BINDING}
        },
    }
