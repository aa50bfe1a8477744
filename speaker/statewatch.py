"""A new node state as an event: the speaker's loop wakes as soon as the document changes.

The controller replaces the document by a rename, so a change shows as a new (inode, size,
mtime) of the path; a stat every `period` seconds costs nothing next to a pass. The loop stays
level-triggered (every pass reads the document itself): this only makes the pass come sooner,
so that a tombstone or a new block takes effect in well under the `--interval`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

PERIOD = 0.1

Stamp = tuple[int, int, int] | None


def stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def watch(path: str, on_change: Callable[[], None], stop: threading.Event, *,
          period: float = PERIOD) -> threading.Thread:
    """Call `on_change` (from a daemon thread) whenever `path` changes, until `stop`."""
    def loop() -> None:
        last = stamp(path)
        while not stop.wait(period):
            now = stamp(path)
            if now != last:
                last = now
                on_change()

    t = threading.Thread(target=loop, name="node-state-watch", daemon=True)
    t.start()
    return t
