"""Run by tests/api/test_generated_client.py with the interpreter of openapi-python-client's own
venv (it has the generated client's dependencies: httpx, attrs, python-dateutil), beside the
client generated from the served document. Prints one JSON object of what it saw.

Usage: python client_flow.py BASE_URL API_KEY
"""

from __future__ import annotations

import datetime
import json
import sys
import uuid

from storefront_client import AuthenticatedClient
from storefront_client.api.catalog import create_product, get_product, update_product
from storefront_client.api.orders import get_order, place_order
from storefront_client.api.reports import get_sales_report
from storefront_client.models import (
    MoneyIn,
    OrderCreate,
    OrderItemIn,
    PaymentIn,
    Problem,
    ProductCreate,
    ProductRead,
    ProductUpdate,
)


def main(base: str, key: str, version: str) -> dict[str, object]:
    # A client speaks the API version of the document it was generated from.
    client = AuthenticatedClient(
        base,
        token=key,
        prefix="",
        auth_header_name="X-API-Key",
        headers={"Storefront-Version": version},
    )
    seen: dict[str, object] = {}
    sku = f"GEN-{uuid.uuid4().hex[:10]}"
    price = MoneyIn(amount=1999, currency="EUR")
    created = create_product.sync_detailed(
        client=client, body=ProductCreate(sku=sku, name="Generated", price=price, stock=10)
    )
    product = created.parsed
    assert isinstance(product, ProductRead), created
    seen["created"] = [created.status_code, type(product).__name__, product.sku]
    etag = created.headers["etag"]

    read = get_product.sync_detailed(product.id, client=client)
    seen["read"] = [read.status_code, type(read.parsed).__name__]

    patched = update_product.sync_detailed(
        product.id, client=client, body=ProductUpdate(name="Renamed"), if_match=etag
    )
    assert isinstance(patched.parsed, ProductRead), patched
    seen["patched"] = [patched.status_code, patched.parsed.name, patched.parsed.version]

    stale = update_product.sync_detailed(
        product.id, client=client, body=ProductUpdate(name="Again"), if_match=etag
    )
    missing = get_product.sync_detailed(uuid.uuid4(), client=client)
    invalid = create_product.sync_detailed(
        client=client, body=ProductCreate(sku="", name="x", price=price)
    )
    for name, response in (("412", stale), ("404", missing), ("422", invalid)):
        problem = response.parsed
        assert isinstance(problem, Problem), (name, response)
        seen[name] = [response.status_code, type(problem).__name__, problem.code, problem.status]

    order = OrderCreate(
        items=[OrderItemIn(product_id=product.id, quantity=2)], payment=PaymentIn(token="tok_ok")
    )
    placed = place_order.sync_detailed(client=client, body=order, idempotency_key=uuid.uuid4().hex)
    seen["order"] = [placed.status_code, type(placed.parsed).__name__]
    fetched = get_order.sync_detailed(placed.parsed.id, client=client)  # type: ignore[union-attr]
    seen["order_read"] = [fetched.status_code, str(fetched.parsed.status)]  # type: ignore[union-attr]

    today = datetime.date.today()
    report = get_sales_report.sync_detailed(client=client, from_=today, to=today)
    seen["report"] = [report.status_code, type(report.parsed).__name__]
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3])))
