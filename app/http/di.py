"""Container wiring for FastAPI routes.

`Depends(Provide["x"])` makes FastAPI call the marker as a *sync* dependency, i.e. through the
thread pool, on every request (~250 µs measured). This marker's `__call__` is async, so FastAPI
awaits it inline; `@inject` still recognises it (it is a `Provide`) and swaps in the provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dependency_injector.wiring import Provide as _Provide

if TYPE_CHECKING:
    Provide = _Provide
else:

    class Provide(_Provide):
        async def __call__(self) -> Any:
            return self
