"""structlog: JSON lines carrying request id, tenant and route from contextvars.

The standard library's loggers (uvicorn, alembic, sqlalchemy) are routed through the same
renderer, so an operator's log pipeline sees one format.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

from app.settings import LoggingSettings


def configure_logging(settings: LoggingSettings, silent: bool = False) -> None:
    """`silent`: every line goes to the null device (one-shot CLI commands without --debug)."""
    stream = open(os.devnull, "w") if silent else sys.stderr  # noqa: SIM115 (lives as long as the process)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
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
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
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
