"""What placing an order answers, live or replayed, as a domain value: the confirmed order, or
the refusal its idempotency key keeps (a declined or rejected payment). The HTTP edge renders
either for the caller's API version; nothing HTTP-shaped is stored.

Stored form (`idempotency_keys.response_body`, `response_status` left NULL):
`{"order": {...}}` or `{"refusal": {"code": ..., "detail": ...}}`. Keys stored before this form
(an HTTP status and the 2026-11-23 body) are still read, for as long as they live (24 h).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core.errors import DomainError
from app.orders.repository import OrderLineRecord, OrderRecord
from app.payments.gateway import PaymentDeclined, PaymentRejected

# The refusals a key keeps: a retry with the same key gets the same answer.
_REFUSALS: dict[str, type[DomainError]] = {
    PaymentDeclined.code: PaymentDeclined,
    PaymentRejected.code: PaymentRejected,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    order: OrderRecord | None = None
    refusal: DomainError | None = None
    replayed: bool = False


def stored(outcome: Outcome) -> dict[str, Any]:
    if outcome.order is not None:
        return {"order": _order_document(outcome.order)}
    assert outcome.refusal is not None
    return {"refusal": {"code": outcome.refusal.code, "detail": outcome.refusal.detail}}


def replayed(tenant_id: uuid.UUID, status: int | None, document: dict[str, Any]) -> Outcome | None:
    """The stored outcome (None: not one this code knows, which it reports as in flight)."""
    if "order" in document:
        return Outcome(order=_order_of(tenant_id, document["order"]), replayed=True)
    if "refusal" in document:
        return _refused(document["refusal"])
    if status == 201 and "items" in document:  # stored before domain outcomes: OrderRead v1
        return Outcome(order=_legacy_order(tenant_id, document), replayed=True)
    if status is not None and "code" in document:  # a stored problem body
        return _refused(document)
    return None


def _refused(document: dict[str, Any]) -> Outcome | None:
    kind = _REFUSALS.get(str(document.get("code")))
    if kind is None:
        return None
    return Outcome(refusal=kind(str(document.get("detail", ""))), replayed=True)


def _order_document(order: OrderRecord) -> dict[str, Any]:
    return {
        "id": str(order.id),
        "status": order.status,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "authorization_id": order.authorization_id,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
        "lines": [[str(x.product_id), x.quantity, x.unit_amount] for x in order.lines],
    }


def _order_of(tenant_id: uuid.UUID, d: dict[str, Any]) -> OrderRecord:
    lines = tuple(OrderLineRecord(uuid.UUID(p), q, a) for p, q, a in d["lines"])
    return OrderRecord(
        uuid.UUID(d["id"]), tenant_id, d["status"], d["total_amount"], d["currency"], "", "",
        d["authorization_id"], datetime.fromisoformat(d["created_at"]),
        datetime.fromisoformat(d["updated_at"]), lines,
    )  # fmt: skip


def _legacy_order(tenant_id: uuid.UUID, d: dict[str, Any]) -> OrderRecord:
    lines = tuple(
        OrderLineRecord(uuid.UUID(x["product_id"]), x["quantity"], x["unit_price"]["amount"])
        for x in d["items"]
    )
    return OrderRecord(
        uuid.UUID(d["id"]), tenant_id, d["status"], d["total"]["amount"], d["total"]["currency"],
        "", "", None, datetime.fromisoformat(d["created_at"]),
        datetime.fromisoformat(d["updated_at"]), lines,
    )  # fmt: skip
