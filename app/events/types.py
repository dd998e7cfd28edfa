"""The registry of event types and their versions: the one place that says what each topic's
current version is, how its CloudEvent is named and described, and how an older version's
payload is upcast to the newest.

A type's version changes when its payload changes shape; topics evolve independently. A row's
version is stored with it (`outbox.version`, default 1: a writer that names no version, such as
a previous release during a rolling deploy, writes v1). Consumers call `upcast` before they read
a payload, so they only ever see the newest version; the JSON schema of every version ships in
`app/events/schemas/<topic>.v<N>.json` with the `dataschema` URN as its `$id`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the repository's records name their version through this registry
    from app.events.repository import Event

TYPE_PREFIX = "storefront."
SCHEMAS = Path(__file__).with_name("schemas")
Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class UnknownEventType(ValueError):
    """A topic or version the registry does not know (a newer producer, or garbage)."""


@dataclass(frozen=True, slots=True)
class EventKind:
    topic: str
    source: str  # the CloudEvents `source`: the producing domain
    subject: str  # the payload field that is the CloudEvents `subject`
    # upcasters[n - 1] turns version n into n + 1; the current version is len(upcasters) + 1
    upcasters: tuple[Upcaster, ...] = field(default=())

    @property
    def current(self) -> int:
        return len(self.upcasters) + 1


def _sale_v1_to_v2(payload: Payload) -> Payload:
    """v1 named one currency for the order and bare `unit_amount`s; v2 gives every line its
    price as money (`{"amount", "currency"}`, as the HTTP API does)."""
    currency = payload["currency"]
    return {
        "order_id": payload["order_id"],
        "at": payload["at"],
        "lines": [
            {
                "product_id": line["product_id"],
                "quantity": line["quantity"],
                "unit_price": {"amount": line["unit_amount"], "currency": currency},
            }
            for line in payload["lines"]
        ],
    }


KINDS: dict[str, EventKind] = {
    kind.topic: kind
    for kind in (
        EventKind("order.placed", "urn:storefront:orders", "order_id"),
        EventKind("order.paid", "urn:storefront:orders", "order_id", (_sale_v1_to_v2,)),
        EventKind("order.cancelled", "urn:storefront:orders", "order_id", (_sale_v1_to_v2,)),
        EventKind("product.changed", "urn:storefront:catalog", "product_id"),
    )
}


def kind_of(topic: str) -> EventKind:
    try:
        return KINDS[topic]
    except KeyError:
        raise UnknownEventType(f"unknown event topic {topic!r}") from None


def current_version(topic: str) -> int:
    return kind_of(topic).current


def type_name(topic: str, version: int) -> str:
    """The CloudEvents `type`: `storefront.order.paid.v2`."""
    return f"{TYPE_PREFIX}{topic}.v{version}"


def parse_type(name: str) -> tuple[str, int]:
    """`storefront.order.paid.v2` -> ("order.paid", 2); UnknownEventType if not ours."""
    topic, _, version = name.removeprefix(TYPE_PREFIX).rpartition(".v")
    if not name.startswith(TYPE_PREFIX) or not version.isdigit():
        raise UnknownEventType(f"not a Storefront event type: {name!r}")
    number = int(version)
    if not 1 <= number <= kind_of(topic).current:
        raise UnknownEventType(f"unknown version {number} of {topic!r}")
    return topic, number


def dataschema(topic: str, version: int) -> str:
    """The CloudEvents `dataschema`: the `$id` of the JSON schema shipped for that version."""
    return f"urn:storefront:events:schema:{topic}.v{version}"


@cache
def schema(topic: str, version: int) -> dict[str, Any]:
    """The JSON schema of that version's payload (as shipped in app/events/schemas/)."""
    kind_of(topic)
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{topic}.v{version}.json").read_text())
    return loaded


def upcast(event: Event) -> Event:
    """The event at its topic's current version (unchanged if it is already). Raises
    UnknownEventType for a topic or a version the registry does not know, KeyError/TypeError
    from an upcaster when an old payload lacks what its version promised."""
    kind = kind_of(event.topic)
    if not 1 <= event.version <= kind.current:
        raise UnknownEventType(f"unknown version {event.version} of {event.topic!r}")
    payload = event.payload
    for step in kind.upcasters[event.version - 1 :]:
        payload = step(payload)
    if payload is event.payload:
        return event
    return replace(event, payload=payload, version=kind.current)
