"""structlog: JSON lines carrying request id, tenant and route from contextvars.

The standard library's loggers (uvicorn, alembic, sqlalchemy) are routed through the same
renderer and the same writer, so an operator's log pipeline sees one format, in order.

Lines are serialized with orjson and written by a `LineWriter`: inside a running event loop the
lines of one loop iteration go out in one write at the start of the next (under load the access
log costs one system call per loop pass, not one per request: docs/performance.md); outside a
loop, and at exit, at once. A process killed with SIGKILL loses at most one iteration's lines.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import sys
import threading
from typing import Any, TextIO

import orjson
import structlog

from app.settings import LoggingSettings


class LineWriter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._pending: list[str] = []
        self._lock = threading.Lock()  # worker threads (asyncio.to_thread) log too
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        self._broken = False

    def write(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here: start-up, the CLI, shutdown, worker threads
            with self._lock:
                self._pending.append(line)
            self.flush()
            return
        with self._lock:
            self._pending.append(line)
            if self._scheduled_on is loop:
                return
            self._scheduled_on = loop
        loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            lines, self._pending, self._scheduled_on = self._pending, [], None
            if not lines or self._broken:
                return
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except Exception as error:  # never log about logging through itself
                self._broken = True
                if sys.__stderr__ is not None:
                    with contextlib.suppress(Exception):
                        sys.__stderr__.write(
                            f"storefront: log stream failed, logging off: {error!r}\n"
                        )


class _WriterLogger:
    """structlog's logger: every level goes to the writer."""

    def __init__(self, writer: LineWriter) -> None:
        self._write = writer.write

    def msg(self, message: str) -> None:
        self._write(message)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


class _WriterHandler(logging.Handler):
    """The standard library's lines, through the same writer (so they stay in order)."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:
            self.handleError(record)


def _dumps(value: Any, **kwargs: Any) -> str:
    """orjson, or the standard library for what orjson refuses (an integer past 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, **kwargs).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, **kwargs)


_writers: list[LineWriter] = []  # every one made: loggers cached earlier may hold old ones


def _flush_all() -> None:
    for writer in _writers:
        writer.flush()


def configure_logging(settings: LoggingSettings, silent: bool = False) -> None:
    """`silent`: every line goes to the null device (one-shot CLI commands without --debug)."""
    stream = open(os.devnull, "w") if silent else sys.stderr  # noqa: SIM115 (lives as long as the process)
    if not _writers:
        atexit.register(_flush_all)
    _flush_all()
    writer = LineWriter(stream)
    _writers.append(writer)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if settings.json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    level = logging.getLevelNamesMapping()[settings.level]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: _WriterLogger(writer),
        cache_logger_on_first_use=True,
    )
    handler = _WriterHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The edge middleware writes the access log (with route, status, duration, tenant).
    logging.getLogger("uvicorn.access").disabled = True
    # One INFO line per payment-provider call would double the log volume of every order.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
