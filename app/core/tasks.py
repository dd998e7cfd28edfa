"""A coroutine run as a background task for the length of a block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, Any], name: str) -> AsyncIterator[None]:
    """Start `work` as a task; on leaving the block cancel it and wait until it has stopped."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def flushing(
    flush: Callable[[], Awaitable[None]], interval: float, name: str
) -> AsyncIterator[None]:
    """`flush()` every `interval` seconds in the background for the block, and once more on
    leaving it (counts kept in memory and written in batches)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            await flush()

    async with in_background(loop(), name):
        yield
    await flush()


class TaskSet:
    """Background tasks started on demand (a reload a message asked for), kept until done;
    `cancel_all` stops them and waits, so none outlives the database it reads (a task left
    running when the loop closes would leave its connection inside a transaction)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
