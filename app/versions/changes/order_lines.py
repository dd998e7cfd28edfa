"""2026-12-03: an order's `items` are its `lines`, and each line carries its `line_total`."""

from __future__ import annotations

from typing import Any

from app.versions import VersionChange


def _order(body: dict[str, Any]) -> dict[str, Any]:
    """The newer order body as 2026-11-23 wrote it (same key order: the bytes match)."""
    older: dict[str, Any] = {}
    for name, value in body.items():
        if name == "lines":
            older["items"] = [
                {k: v for k, v in line.items() if k != "line_total"} for line in value
            ]
        else:
            older[name] = value
    return older


def _page(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "items": [_order(order) for order in body["items"]]}


def _rename(mapping: dict[str, Any], old: str, new: str, value: Any) -> dict[str, Any]:
    return {
        (new if key == old else key): (value if key == old else v) for key, v in mapping.items()
    }


class OrderItemsBecomeLines(VersionChange):
    """Orders: `items` is renamed `lines`, and every line has a `line_total` (quantity times
    unit price, in the order's currency). Requests still send `items`."""

    responses = {
        ("POST", "/v1/orders"): _order,
        ("GET", "/v1/orders"): _page,
        ("GET", "/v1/orders/{order_id}"): _order,
        ("POST", "/v1/orders/{order_id}/cancel"): _order,
    }

    def downgrade_openapi(self, document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        order = schemas["OrderRead"]
        lines = {**order["properties"]["lines"], "title": "Items"}
        order["properties"] = _rename(order["properties"], "lines", "items", lines)
        order["required"] = ["items" if name == "lines" else name for name in order["required"]]
        line = schemas["OrderLineRead"]
        line["properties"].pop("line_total")
        line["required"].remove("line_total")
