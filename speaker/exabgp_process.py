"""ExaBGP as a supervised child process, and its process API (commands, ACKs, events).

- Its own files in the run directory (config, env, pid, log, API socket): nothing global, so one
  speaker per network namespace works side by side.
- It dies with the speaker (parent-death SIGKILL) and lives in its own session (a terminal's
  Ctrl-C does not reach it): ExaBGP never gets the chance to send a Cease NOTIFICATION when the
  speaker stops, which is what keeps graceful restart intact at the ToR.
- A stale pid file (from a previous, killed run) is removed and its process, if it is still our
  ExaBGP, killed first: a leftover pid file makes a new ExaBGP exit silently.
- With `api.ack`, ExaBGP answers every command with `done` or `error`; the reader thread always
  reads them (ExaBGP blocks otherwise) and hands each to the waiting command, in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from flatroute.errors import AdapterError
from flatroute.files import PRIVATE, write_atomic
from speaker.exabgp_config import Paths
from speaker.exabgp_json import Ack, Event, parse_line

BRIDGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exabgp_bridge.py")
BACKOFF_MAX = 30.0


def bridge_command(paths: Paths) -> list[str]:
    return [sys.executable, "-I", "-S", BRIDGE, paths.api_socket]


def exabgp_command() -> list[str]:
    return [sys.executable, "-m", "exabgp"]


def exit_reason(log_path: str, start: int = 0, *, limit: int = 300) -> str | None:
    """ExaBGP's own words for why it stopped: its last `error:` line since `start` in its
    output, else its last lines (timestamps and pids taken off), as one line."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(start, os.path.getsize(log_path) - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [_words(x) for x in text.splitlines()]
    lines = [x for x in lines if x]
    errors = [x for x in lines if x.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()[:limit]
    return " / ".join(lines[-3:])[:limit] or None


def _words(line: str) -> str:
    """`04:27:00 8158   configuration   invalid keyword "bogus"` -> `invalid keyword "bogus"`"""
    parts = line.split(None, 3)
    if len(parts) >= 3 and parts[0].count(":") == 2 and parts[1].isdigit():
        return parts[3].strip() if len(parts) == 4 else ""
    return line.strip()


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ExaBGPProcess(Protocol):
    """The ExaBGP child as the session adapter uses it (`ExaBGP`; an in-memory fake in tests)."""

    #: how many times it was started; set when its API connection is up
    starts: int
    connected: threading.Event
    last_exit: str | None

    def alive(self) -> bool: ...
    def supervise(self, config: Callable[[], str], env: str) -> bool: ...
    def reload(self, config: str) -> None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...
    def send(self, commands: Sequence[str], timeout: float = 10.0) -> list[bool]: ...


class _Waiter:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class ExaBGP:
    def __init__(self, paths: Paths, on_event: Callable[[Event], None], *,
                 command: Sequence[str] | None = None, log: Any = None) -> None:
        self.paths = paths
        self.on_event = on_event
        self.command = list(command or exabgp_command())
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0  # how many times we started it; the agent replays when this changes
        self.connected = threading.Event()
        self._conn: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._waiters: deque[_Waiter] = deque()
        self._send_lock = threading.Lock()
        self._next_start = 0.0
        self._backoff = 1.0
        self.last_exit: str | None = None
        self._log_from = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, config: str, env: str) -> None:
        os.makedirs(self.paths.run_dir, exist_ok=True)
        write_atomic(self.paths.config, config, PRIVATE)  # MD5 passwords
        write_atomic(self.paths.env, env)
        self._clean_stale_pid()
        self._listen()
        self.connected.clear()
        logf = open(self.paths.log + ".out", "ab")  # noqa: SIM115 - owned by the child
        self._log_from = logf.tell()  # where this run's own words start
        env_vars = dict(os.environ)
        env_vars["exabgp_api_ack"] = "true"
        try:
            self.proc = subprocess.Popen(
                [*self.command, "--env-file", self.paths.env, "server", self.paths.config],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                cwd=self.paths.run_dir, env=env_vars, preexec_fn=_die_with_parent,  # noqa: PLW1509
                start_new_session=True)
        except OSError as exc:
            raise AdapterError(f"cannot start ExaBGP: {exc}") from exc
        finally:
            logf.close()
        self.starts += 1
        if self.log:
            self.log.info("exabgp_started", pid=self.proc.pid, starts=self.starts)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def supervise(self, config: Callable[[], str], env: str) -> bool:
        """Restart ExaBGP with backoff if it died; returns True when it (re)started."""
        if self.alive():
            if self.connected.is_set() and time.monotonic() > self._next_start + 60:
                self._backoff = 1.0  # it has been healthy for a minute
            return False
        if self.proc is not None and self.last_exit is None:
            why = exit_reason(self.paths.log + ".out", self._log_from)
            self.last_exit = f"ExaBGP exited with status {self.proc.returncode}" + (
                f": {why}" if why else "")
            if self.log:
                self.log.warning("exabgp_exited", status=self.proc.returncode,
                                 retry_in=self._backoff)
            self._fail_waiters()
            self._next_start = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        if time.monotonic() < self._next_start:
            return False
        self.last_exit = None
        self.start(config(), env)
        return True

    def reload(self, config: str) -> None:
        """Rewrite the configuration and have ExaBGP reload it (SIGUSR1). ExaBGP resets only
        the neighbours whose configuration changed, and sends the others' static route changes
        as updates (both measured against FRR)."""
        if self.proc is None or self.proc.poll() is not None:
            raise AdapterError("ExaBGP is not running: nothing to reload")
        write_atomic(self.paths.config, config, PRIVATE)  # MD5 passwords
        try:
            os.kill(self.proc.pid, signal.SIGUSR1)
        except ProcessLookupError as exc:
            raise AdapterError("ExaBGP exited before its reload") from exc
        if self.log:
            self.log.info("exabgp_reloaded", pid=self.proc.pid)

    def kill(self) -> None:
        """Stop ExaBGP without a NOTIFICATION (SIGKILL): the ToR keeps our routes as stale."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None  # killed on purpose: no crash to report, no backoff to serve
        self._fail_waiters()
        with contextlib.suppress(OSError):
            os.unlink(self.paths.pid)

    def close(self) -> None:
        self.kill()
        for s in (self._conn, self._listener):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        with contextlib.suppress(OSError):
            os.unlink(self.paths.api_socket)

    def _clean_stale_pid(self) -> None:
        try:
            with open(self.paths.pid, encoding="ascii") as fh:
                pid = int(fh.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid > 1:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read()
                if self.paths.config.encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)  # an orphaned ExaBGP of ours
            except OSError:
                pass
        with contextlib.suppress(OSError):
            os.unlink(self.paths.pid)

    # -- API channel -------------------------------------------------------------------------
    def _listen(self) -> None:
        if self._listener is not None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.paths.api_socket)
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lst.bind(self.paths.api_socket)
        os.chmod(self.paths.api_socket, 0o600)
        lst.listen(4)
        self._listener = lst
        threading.Thread(target=self._accept_loop, name="exabgp-api", daemon=True).start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            old, self._conn = self._conn, conn
            if old is not None:
                with contextlib.suppress(OSError):
                    old.close()
            self._fail_waiters()
            self.connected.set()
            self._read(conn)
            if self._conn is conn:
                self.connected.clear()
                self._fail_waiters()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                event = parse_line(raw.decode("utf-8", "replace"))
                if isinstance(event, Ack):
                    if self._waiters:
                        w = self._waiters.popleft()
                        w.ok = event.ok
                        w.done.set()
                    continue
                try:
                    self.on_event(event)
                except Exception as exc:  # never let a handler kill the reader
                    if self.log:
                        self.log.error("exabgp_event_handler_failed", error=str(exc))

    def _fail_waiters(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            w.ok = False
            w.done.set()

    def send(self, commands: Sequence[str], timeout: float = 10.0) -> list[bool]:
        """Send commands (pipelined) and wait for each answer; False = error or no answer."""
        if not commands:
            return []
        conn = self._conn
        if conn is None or not self.connected.is_set():
            raise AdapterError("ExaBGP API is not connected")
        waiters = [_Waiter() for _ in commands]
        with self._send_lock:
            self._waiters.extend(waiters)
            try:
                conn.sendall("".join(c + "\n" for c in commands).encode())
            except OSError as exc:
                raise AdapterError(f"ExaBGP API write failed: {exc}") from exc
        deadline = time.monotonic() + timeout
        for w in waiters:
            w.done.wait(max(0.0, deadline - time.monotonic()))
        return [w.done.is_set() and w.ok for w in waiters]
