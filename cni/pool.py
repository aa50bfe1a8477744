"""Pre-forked, one-shot workers for `flatroute cni serve`.

Forking the service (a Python process holding the whole plugin) after accept() put a fork on
every request's critical path (~1-2 ms, a tenth of an ADD). Instead `spare` workers are forked
ahead of time, each blocked in accept() on the shared listener; the kernel hands each
connection to one of them. A worker serves exactly one connection, as the forked child did
(namespace moves, per-request state and crashes stay in it), then exits. It writes its pid to a
pipe when it accepts and again (high bit set) when it has answered; the parent reaps finished
workers and kills a request still running after `max_seconds`.

Replacements are forked once no request is being answered (or at once if no worker is left
idle, or after `REFILL_AFTER` seconds): a fork, and the new process's first page faults,
compete for the CPU with the request on a small node, measured here at ~2.5 ms per request
(a VERSION's round trip went from 0.5 to 3 ms when the replacement was forked at accept).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any, NoReturn

SIGNALS = {signal.SIGTERM, signal.SIGINT}
DONE = 1 << 31  # the second message a worker sends: pid | DONE
REFILL_AFTER = 0.1  # seconds: a request answered slower than this no longer delays a refill


class Pool:
    def __init__(self, listener: socket.socket, work: Callable[[socket.socket], None], *,
                 spare: int, max_seconds: float, log: Any) -> None:
        self.listener = listener
        self.work = work
        self.spare = max(1, spare)
        self.max_seconds = max_seconds
        self.log = log
        self.idle: set[int] = set()
        self.busy: dict[int, float] = {}
        self.answering: dict[int, float] = {}  # accepted, not answered yet
        self._rfd, self._wfd = os.pipe()  # non-inheritable: delegated plugins never see it

    def fill(self) -> None:
        """Fork workers until `spare` of them wait in accept(), unless that would slow a
        request being answered (see above)."""
        now = time.monotonic()
        if self.idle and any(now - t < REFILL_AFTER for t in self.answering.values()):
            return
        while len(self.idle) < self.spare:
            # No SIGTERM between fork and the worker resetting it: a worker must never run
            # the parent's clean-up (it would remove the socket).
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
            try:
                pid = os.fork()
                if pid == 0:
                    self._worker()
            except OSError as exc:
                self.log.warning("cni_fork_failed", error=str(exc))
                return
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            self.idle.add(pid)

    def wait(self, timeout: float) -> None:
        """Up to `timeout` seconds for a worker to take a connection; then reap, kill what ran
        too long and fork replacements."""
        ready, _, _ = select.select([self._rfd], [], [], timeout)
        if ready:
            data = os.read(self._rfd, 4096)  # whole 4-byte pids: pipe writes are atomic
            now = time.monotonic()
            for i in range(0, len(data) - 3, 4):
                pid = int.from_bytes(data[i:i + 4], "big")
                if pid & DONE:
                    self.answering.pop(pid & ~DONE, None)
                elif pid in self.idle:
                    self.idle.discard(pid)
                    self.busy[pid] = self.answering[pid] = now
        self._reap()
        self.fill()

    def _reap(self) -> None:
        while self.idle or self.busy:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.idle.clear()
                self.busy.clear()
                return
            if pid == 0:
                break
            self.idle.discard(pid)
            self.busy.pop(pid, None)
            self.answering.pop(pid, None)
        now = time.monotonic()
        for pid, started in list(self.busy.items()):
            if now - started > self.max_seconds:
                self.log.warning("cni_request_killed", child=pid, seconds=round(now - started))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.busy[pid] = now  # reaped on a later pass; do not kill again at once

    def stop(self) -> int:
        """End the idle workers; busy ones finish their request. Return how many are busy."""
        for pid in self.idle:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._reap()
        for fd in (self._rfd, self._wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        return len(self.busy)

    def _worker(self) -> NoReturn:
        status = 1
        try:
            import gc

            gc.disable()  # a short-lived process: nothing worth a collection's page copies
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            os.close(self._rfd)
            try:
                conn, _ = self.listener.accept()
            except OSError as exc:  # EMFILE and the like: back off, the parent forks anew
                self.log.warning("cni_accept_failed", error=str(exc))
                time.sleep(0.1)
                raise
            os.write(self._wfd, os.getpid().to_bytes(4, "big"))
            self.listener.close()
            self.work(conn)
            os.write(self._wfd, (os.getpid() | DONE).to_bytes(4, "big"))
            status = 0
        except BaseException as exc:  # a worker reports and exits, always
            with contextlib.suppress(BaseException):
                self.log.error("cni_request_crashed", error=f"{type(exc).__name__}: {exc}")
        finally:
            os._exit(status)
