"""Events on the wire: CloudEvents 1.0 in the AMQP binding's structured content mode.

Every message the relay publishes is one JSON CloudEvent (`application/cloudevents+json`, the
`cloudevents` SDK's JSON format): `id` (the outbox event id), `source` (the producing domain,
`urn:storefront:orders`), `type` with the version (`storefront.order.paid.v2`), `time` (when
the change committed), `subject` (the order or product id), `dataschema` (the URN of the JSON
schema shipped for that version), `datacontenttype: application/json`, and the extension
`tenantid`. The AMQP properties repeat `message_id` and `type` for tools that look there.

Decoding also accepts the envelope that releases before CloudEvents published
(`application/json`, `{"id", "tenant_id", "topic", "payload", "created_at"}`): those are v1
payloads, so a message still queued from a previous release is consumed through its upcaster.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import aio_pika
from cloudevents.core.bindings import rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from app.events import types
from app.events.repository import Event

FORMAT = JSONFormat()
CONTENT_TYPE = FORMAT.get_content_type()  # application/cloudevents+json
TENANT_EXTENSION = "tenantid"  # extension names are lowercase letters and digits only


def to_cloudevent(event: Event) -> CloudEvent:
    kind = types.kind_of(event.topic)
    return CloudEvent(
        attributes={
            "id": str(event.id),
            "source": kind.source,
            "specversion": "1.0",
            "type": types.type_name(event.topic, event.version),
            "time": event.created_at,
            "subject": str(event.payload[kind.subject]),
            "dataschema": types.dataschema(event.topic, event.version),
            "datacontenttype": "application/json",
            TENANT_EXTENSION: str(event.tenant_id),
        },
        data=event.payload,
    )


def from_cloudevent(cloud: CloudEvent) -> Event:
    """The event as sent (its version not upcast: the consumer does that)."""
    topic, version = types.parse_type(cloud.get_type())
    data = cloud.get_data()
    time = cloud.get_time()
    if not isinstance(data, dict) or time is None:
        raise types.UnknownEventType(f"{cloud.get_type()} without JSON data or time")
    tenant = cloud.get_extension(TENANT_EXTENSION)
    return Event(uuid.UUID(cloud.get_id()), uuid.UUID(str(tenant)), topic, data, time, version)


def encode(event: Event) -> aio_pika.Message:
    message = rabbitmq.to_structured(to_cloudevent(event), FORMAT)
    return aio_pika.Message(
        message.body,
        message_id=str(event.id),
        type=types.type_name(event.topic, event.version),
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def decode(body: bytes, content_type: str | None) -> Event:
    """A message's event: a structured-mode CloudEvent, or the pre-CloudEvents envelope (v1).
    Raises (the SDK's CloudEventValidationError, UnknownEventType, ValueError) on anything
    else; the consumer's queue dead-letters such a message."""
    if (content_type or "").startswith("application/json") and b'"topic"' in body:
        return _legacy(json.loads(body))
    message = rabbitmq.RabbitMQMessage(headers={}, content_type=content_type, body=body)
    cloud = rabbitmq.from_rabbitmq(message, FORMAT, CloudEvent)
    assert isinstance(cloud, CloudEvent)
    return from_cloudevent(cloud)


def _legacy(data: dict[str, Any]) -> Event:
    return Event(
        uuid.UUID(data["id"]),
        uuid.UUID(data["tenant_id"]),
        data["topic"],
        data["payload"],
        datetime.fromisoformat(data["created_at"]),
        1,
    )
