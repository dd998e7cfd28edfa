"""The event registry: names, schemas, upcasters (no I/O)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from app.events import envelope, types
from app.events.repository import Event

V1_SALE = {
    "order_id": "6f1c1d0e-8a3b-4c56-9d2e-0a1b2c3d4e5f",
    "currency": "EUR",
    "at": "2026-12-04T10:00:00+00:00",
    "lines": [
        {"product_id": "0b6e9a52-1f7c-4d3e-8a9b-1c2d3e4f5a6b", "quantity": 2, "unit_amount": 1200},
        {"product_id": "1c7fab63-2a8d-4e4f-9bac-2d3e4f5a6b7c", "quantity": 1, "unit_amount": 300},
    ],
}


def _valid(topic: str, version: int, payload: dict[str, object]) -> None:
    Draft202012Validator(types.schema(topic, version), format_checker=FormatChecker()).validate(
        payload
    )


def test_every_version_of_every_type_ships_a_schema_named_by_its_dataschema() -> None:
    for topic, kind in types.KINDS.items():
        for version in range(1, kind.current + 1):
            schema = types.schema(topic, version)
            assert schema["$id"] == types.dataschema(topic, version)
            Draft202012Validator.check_schema(schema)
    shipped = {path.name for path in types.SCHEMAS.glob("*.json")}
    expected = {f"{t}.v{v}.json" for t, k in types.KINDS.items() for v in range(1, k.current + 1)}
    assert shipped == expected


@pytest.mark.parametrize("topic", ["order.paid", "order.cancelled"])
def test_a_v1_sale_upcasts_to_a_valid_v2_with_a_price_per_line(topic: str) -> None:
    _valid(topic, 1, V1_SALE)
    event = Event(uuid.uuid4(), uuid.uuid4(), topic, V1_SALE, datetime.now(UTC), 1)
    upcast = types.upcast(event)
    assert upcast.version == 2 == types.current_version(topic)
    _valid(topic, 2, upcast.payload)
    assert [line["unit_price"] for line in upcast.payload["lines"]] == [
        {"amount": 1200, "currency": "EUR"},
        {"amount": 300, "currency": "EUR"},
    ]
    assert types.upcast(upcast) is upcast  # the current version passes unchanged


def test_type_names_carry_the_version_and_parse_back() -> None:
    assert types.type_name("order.paid", 2) == "storefront.order.paid.v2"
    assert types.parse_type("storefront.order.paid.v2") == ("order.paid", 2)
    assert types.parse_type("storefront.order.placed.v1") == ("order.placed", 1)
    for bad in ("order.paid", "storefront.order.paid", "storefront.order.paid.v9", "x.y.v1"):
        with pytest.raises(types.UnknownEventType):
            types.parse_type(bad)
    newer = Event(uuid.uuid4(), uuid.uuid4(), "order.paid", {}, datetime.now(UTC), 3)
    with pytest.raises(types.UnknownEventType):
        types.upcast(newer)


def test_the_envelope_round_trips_through_the_sdk() -> None:
    event = Event(uuid.uuid4(), uuid.uuid4(), "order.paid", V1_SALE, datetime.now(UTC), 1)
    message = envelope.encode(event)
    assert message.content_type == "application/cloudevents+json"
    body = json.loads(message.body)
    assert body["type"] == "storefront.order.paid.v1"
    assert body["tenantid"] == str(event.tenant_id)
    assert body["subject"] == V1_SALE["order_id"]
    assert envelope.decode(message.body, message.content_type) == event
