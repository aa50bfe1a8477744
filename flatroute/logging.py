"""structlog set-up shared by every long-running process (speaker, controller, lab)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure(*, json: bool = True, level: str = "info", stream: Any = None) -> None:
    """Configure structlog once: JSON lines for machines, key=value for people."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    """A bound logger carrying the given context (node, peer, prefix, ...)."""
    return structlog.get_logger().bind(**context)
