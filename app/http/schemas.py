"""Shared HTTP schemas: money, pages, problem details."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.core.money import Money
from app.core.pagination import Slice

T = TypeVar("T")


def _storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot encode lone surrogates (which JSON's
    \\uD800-style escapes can produce): refuse both here as a 422, not a 500 from the driver."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from error
    return value


class _NoNulInSchema:
    """Says in the JSON Schema what `_storable` enforces of NUL (lone surrogates cannot be said
    in a pattern without also refusing every character outside the BMP)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = "^[^\\u0000]*$"
        return schema


Text = Annotated[str, AfterValidator(_storable), _NoNulInSchema()]
"""A string that PostgreSQL can store; use it for every free-text input."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MoneyIn(Strict):
    # Strict: a JSON integer only; "100" or true (which lax mode turns into 1) is a 422.
    amount: Annotated[
        int, Field(strict=True, ge=0, le=10**12, description="Integer minor units (cents).")
    ]
    currency: Annotated[
        str, Field(pattern=r"^[A-Z]{3}$", max_length=3, description="ISO 4217 code.")
    ]

    def to_money(self) -> Money:
        return Money(self.amount, self.currency)


class MoneyOut(BaseModel):
    amount: int
    currency: str


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None

    @classmethod
    def of(cls, page: Slice[Any], convert: Callable[[Any], T]) -> Self:
        return cls(items=[convert(item) for item in page.items], next_cursor=page.next_cursor)


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, plus our stable `code` and the `request_id`."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    request_id: str
    errors: list[ValidationIssue] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each listed status documented as problem+json."""
    return {
        status: {"model": Problem, "content": {"application/problem+json": {}}}
        for status in statuses
    }


# RFC 6749 5.1: a response carrying a secret (tokens, a new key or webhook secret) must not be
# cached. Documented per operation in app/http/openapi.py (_OPERATION_HEADERS).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# What any route behind a tenant credential can answer besides its own errors: 400 (malformed
# request or consistency token), 401, 403, 429 (the tenant's quota), 503 (database, door).
AUTHENTICATED = (400, 401, 403, 429, 503)
