"""flatroute.logging: JSON lines that stay whole when several processes share one log."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import structlog

from flatroute.logging import configure, get_logger


def test_forked_writers_never_glue_two_lines_together(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    raw = open(path, "ab", buffering=0)  # noqa: SIM115 - lives for the test
    # unbuffered, as under PYTHONUNBUFFERED=1: print() would write message and newline apart
    stream = io.TextIOWrapper(raw, write_through=True)
    try:
        configure(stream=stream)
        children = []
        for c in range(4):
            pid = os.fork()
            if pid == 0:
                try:
                    log = get_logger(child=c)
                    for i in range(300):
                        log.info("cni_request", i=i)
                finally:
                    os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
    finally:
        structlog.reset_defaults()
        stream.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 1200
    events = [json.loads(line) for line in lines]  # each line one whole document
    assert {(e["child"], e["i"]) for e in events} == {(c, i) for c in range(4)
                                                        for i in range(300)}


def test_streams_without_a_descriptor_still_work() -> None:
    out = io.StringIO()
    try:
        configure(stream=out, json=True)
        get_logger(node="n1").warning("bfd_state", peer="fe80::1")
    finally:
        structlog.reset_defaults()
    doc = json.loads(out.getvalue())
    assert (doc["event"], doc["node"], doc["level"]) == ("bfd_state", "n1", "warning")
