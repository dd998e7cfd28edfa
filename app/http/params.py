"""Query parameters every list route shares (FastAPI-specific, unlike app/http/schemas.py)."""

from typing import Annotated

from fastapi import Query

Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=512,
        description="`next_cursor` of the previous page (opaque; 400 `pagination.invalid_cursor`"
        " when it is not one this API returned).",
        json_schema_extra={"pattern": "^[A-Za-z0-9_-]+$"},
    ),
]
