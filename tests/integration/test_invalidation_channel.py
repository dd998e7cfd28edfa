"""The invalidation channel on its own, against the real primary: a message goes out only when
the writer commits, and a LISTEN connection that the server kills is reopened, with a re-read
for whatever the gap may have hidden."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from app.db.invalidation import CHANNEL, Handler, InvalidationListener
from app.events.relay import listen_dsn
from tests.conftest import Harness, raw_connect


class Recorder:
    """A subscriber that remembers what it was told (a fake of the subscriber role, not of the
    code under test)."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []
        self.resyncs = 0

    @property
    def topics(self) -> Mapping[str, Handler]:
        return {"test.changed": self.seen.append}

    async def resync(self) -> None:
        self.resyncs += 1

    async def close(self) -> None:
        pass


async def _eventually(condition: Any, within: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_only_committed_writes_announce_and_a_killed_listener_comes_back(
    harness: Harness,
) -> None:
    recorder = Recorder()
    listener = InvalidationListener([recorder], resync_interval=30.0)
    dsn = listen_dsn(harness.container.settings().database)
    await listener.start(dsn)
    runner = asyncio.create_task(listener.run(dsn))
    try:
        assert listener.listening
        assert recorder.resyncs == 1  # the start-up load
        uow_factory = harness.container.uow_factory

        async with uow_factory() as uow:  # no commit: rolled back
            await uow.invalidations.publish("test.changed", ["rolled-back"])
        async with uow_factory() as uow:
            await uow.invalidations.publish("test.changed", ["committed"])
            await uow.commit()
        assert await _eventually(lambda: recorder.seen == [["committed"]])
        await asyncio.sleep(0.2)  # the rolled-back one never arrives, even late
        assert recorder.seen == [["committed"]]

        # The server ends the LISTEN session (a restart, a failover, an idle-session killer).
        admin = await raw_connect(harness.cluster, "primary", "postgres")
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND query ILIKE $1",
                f"%LISTEN%{CHANNEL}%",
            )
        finally:
            await admin.close()
        assert killed >= 1  # ours, and the harness app's own listener
        assert await _eventually(lambda: recorder.resyncs >= 2 and listener.listening)

        async with uow_factory() as uow:
            await uow.invalidations.publish("test.changed", ["after-reconnect"])
            await uow.commit()
        assert await _eventually(lambda: recorder.seen[-1:] == [["after-reconnect"]])
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await listener.close()
