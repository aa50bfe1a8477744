"""structlog set-up shared by every long-running process (speaker, controller, lab)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def configure(*, json: bool = True, level: str = "info", stream: Any = None) -> None:
    """Configure structlog once: JSON lines for machines, key=value for people."""
    out = stream or sys.stderr
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
        logger_factory=lambda *_args: LineLogger(out),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    """A bound logger carrying the given context (node, peer, prefix, ...)."""
    return structlog.get_logger().bind(**context)


class LineLogger:
    """Writes each log line, newline included, with one write(2).

    structlog's PrintLogger prints the message and its newline as two writes when the stream
    is unbuffered (PYTHONUNBUFFERED=1, common in containers): processes sharing a log file,
    such as the forked children of `flatroute cni serve`, then glued two JSON lines into one
    (seen in CI). One write per line on an O_APPEND file or a pipe keeps lines whole.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        line = message + "\n"
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # StringIO, pytest's capture
            self._stream.write(line)
            self._stream.flush()
            return
        self._stream.flush()  # what Python still buffers for this stream goes first
        data = line.encode()
        while data:
            data = data[os.write(fd, data):]

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg

