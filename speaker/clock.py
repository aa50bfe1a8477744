"""The clock the speaker reads: monotonic time for intervals, wall time for what it reports.

Injected (a fake in unit tests) so that graceful-restart holds, settling and discovery retries
can be tested without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()
