"""Pause the cyclic garbage collector around a burst of allocations that form no cycles.

A cold plan of 5,000 nodes makes some 170,000 objects (addresses, networks, node plans), and
a controller cycle a few hundred thousand with the documents; none of them form reference
cycles. While they pile up, the cyclic collector walks them and everything else alive, again
and again: its full passes took as long as the planning itself. Reference counting still
frees everything; the collector resumes after (and looks at the new objects once).

The planner is pure and leaves the collector alone: its callers at scale pause it (the
controller's reconciler around its whole cycle, `flatroute plan`, the benchmarks).
"""

from __future__ import annotations

import gc
from types import TracebackType


class paused:  # lower case: it reads as a function, `with gcpause.paused():`
    """Disable the collector for the block; re-enable it after, unless a caller had paused
    it already (an outer pause is left alone).

    A class, not a @contextmanager generator: leaving a generator allocates (StopIteration
    and the like), and the first allocation after gc.enable() runs the collection that was
    held back, over every object made meanwhile. That collection belongs after the block,
    where the caller's next allocation runs it, not inside the block's exit."""

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._was_enabled:
            gc.enable()
