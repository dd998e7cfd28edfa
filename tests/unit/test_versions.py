"""The version changes turn the newest bodies into exactly the bytes the older version wrote."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from starlette.responses import JSONResponse

from app.core.clock import FixedClock
from app.http.versioning import _encode
from app.orders.repository import OrderLineRecord, OrderRecord
from app.orders.schemas import OrderRead
from app.settings import DeprecationSettings
from app.versions import FIRST, NEWEST, downgrades
from app.versions.deprecations import Deprecations

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ORDER = OrderRecord(
    uuid.UUID(int=7), uuid.UUID(int=1), "confirmed", 2598, "EUR", "", "", "auth_1", AT, AT,
    (OrderLineRecord(uuid.UUID(int=9), 2, 1299),),
)  # fmt: skip

# What 2026-11-23 answered for this order (the OrderRead of that release, byte for byte).
FIRST_BYTES = (
    b'{"id":"00000000-0000-0000-0000-000000000007","status":"confirmed",'
    b'"total":{"amount":2598,"currency":"EUR"},'
    b'"items":[{"product_id":"00000000-0000-0000-0000-000000000009","quantity":2,'
    b'"unit_price":{"amount":1299,"currency":"EUR"}}],'
    b'"created_at":"2026-12-03T12:00:00Z","updated_at":"2026-12-03T12:00:00Z"}'
)


def _first(method: str, template: str, body: bytes) -> bytes:
    value = json.loads(body)
    for downgrade in downgrades(FIRST, method, template):
        value = downgrade(value)
    return _encode(value)


def test_an_order_downgrades_to_the_first_versions_bytes() -> None:
    newest = JSONResponse(OrderRead.of(ORDER).model_dump(mode="json")).body
    assert b'"lines"' in newest
    assert b'"line_total":{"amount":2598' in newest
    for method, template in (("POST", "/v1/orders"), ("GET", "/v1/orders/{order_id}")):
        assert _first(method, template, newest) == FIRST_BYTES


def test_a_page_of_orders_downgrades_every_order() -> None:
    order = OrderRead.of(ORDER).model_dump(mode="json")
    page = JSONResponse({"items": [order, order], "next_cursor": None}).body
    assert _first("GET", "/v1/orders", page) == (
        b'{"items":[' + FIRST_BYTES + b"," + FIRST_BYTES + b'],"next_cursor":null}'
    )


def test_the_newest_version_and_unchanged_routes_need_no_downgrade() -> None:
    assert downgrades(NEWEST, "POST", "/v1/orders") == []
    assert downgrades(FIRST, "GET", "/v1/products/{product_id}") == []


def test_a_deprecated_route_the_app_does_not_serve_stops_start_up() -> None:
    entry = DeprecationSettings.model_validate(
        {"route": "GET /v1/features/", "deprecated_at": "2027-01-01T00:00:00+01:00"}
    )
    assert entry.deprecated_at.utcoffset() == timedelta(0)  # kept in UTC
    deprecations = Deprecations([entry], FixedClock(AT))
    deprecations.check_routes({("GET", "/v1/features/")})
    with pytest.raises(ValueError, match="no route 'GET /v1/features/'"):
        deprecations.check_routes({("GET", "/v1/features")})
