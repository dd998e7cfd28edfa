"""The log line writer (app/logging.py): one write per loop iteration, at once outside a loop,
every line whole, and a broken stream turns it off instead of spinning."""

from __future__ import annotations

import asyncio
import io
import threading

from app.logging import LineWriter


class Recording(io.StringIO):
    """A stream that counts its writes; `broken`: each one fails as a closed pipe would."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.writes = 0
        self.broken = broken

    def write(self, text: str) -> int:
        self.writes += 1
        if self.broken:
            raise BrokenPipeError("gone")
        return super().write(text)


async def test_lines_of_one_loop_iteration_go_out_in_one_write() -> None:
    stream = Recording()
    writer = LineWriter(stream)
    for n in range(50):
        writer.write(f"line {n}")
    assert stream.getvalue() == ""  # not yet: at the start of the next iteration
    await asyncio.sleep(0)
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(50)]
    assert stream.writes == 1


def test_outside_a_loop_and_from_threads_lines_are_written_at_once_and_whole() -> None:
    stream = Recording()
    writer = LineWriter(stream)
    writer.write("first")
    assert stream.getvalue() == "first\n"
    threads = [
        threading.Thread(target=lambda n=n: [writer.write(f"t{n}-{i}") for i in range(200)])
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 801
    assert sorted(lines[1:]) == sorted(f"t{n}-{i}" for n in range(4) for i in range(200))


async def test_a_broken_stream_turns_the_writer_off_without_spinning() -> None:
    stream = Recording(broken=True)
    writer = LineWriter(stream)
    writer.write("lost")
    for _ in range(20):
        await asyncio.sleep(0)
    writer.write("also lost")
    for _ in range(20):
        await asyncio.sleep(0)
    assert stream.writes == 1
