"""Container wiring for FastAPI routes, without FastAPI paying for it on every request.

Routes declare container dependencies the dependency-injector way, as parameter defaults:

    @router.get(...)
    @inject
    async def get_product(..., service: CatalogService = Provide["catalog_service"]): ...

`inject` is dependency-injector's `@inject` (it swaps each marker for the wired provider's
value) plus one thing: the injected parameters are removed from the signature FastAPI reads.
`Depends(Provide[...])` would make each of them a FastAPI sub-dependency resolved per request
(and, with the stock marker, called through the thread pool); here FastAPI never sees them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from dependency_injector.wiring import Provide
from dependency_injector.wiring import inject as _inject

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["Provide", "inject"]


def inject(fn: F) -> F:
    patched = _inject(fn)
    signature = inspect.signature(fn)
    visible = [
        p for p in signature.parameters.values() if not getattr(p.default, "__IS_MARKER__", False)
    ]
    patched.__signature__ = signature.replace(parameters=visible)  # type: ignore[attr-defined]
    return patched
