"""`flatroute cni serve`: the resident half of the fast CNI path.

The runtime execs the C client (cni/client/flatroute-cni.c), which sends the CNI_* variables
and stdin over a unix socket (framing: cni/wire.py). This service has already imported the
plugin (and built its `setns` binding); each connection is served by a worker forked ahead of
time (cni/pool.py) that runs `cni.main.run` exactly as the exec'd plugin would, in its own
process (namespace moves, per-request state and crashes stay there), sends back the exit code
and stdout, and exits.

The work happens in this service's network namespace: run it in the namespace the runtime
runs plugins in (the node's), one service per socket. Socket: mode 0600, root's, created under
a temporary name and renamed into place (a stale socket is replaced; a live service at the
same path makes this one refuse to start); removed on SIGTERM/SIGINT if it is still ours.

DELs the client queued while no service was listening (cni/delqueue.py) are run once the
socket is in place, before the first request is answered, and then whenever an entry appears
(looked for at most once a second), each in a forked child like a request.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import socket
import struct
import sys
import time
from typing import Any

from cni import delqueue, pool, wire

DEFAULT_SOCKET = "/run/flatroute/cni.sock"
_SIGNALS = pool.SIGNALS


class _Stop(Exception):
    """SIGTERM or SIGINT in the accept loop."""


def preload() -> None:
    """Import everything a verb imports, and build the setns binding, before any fork."""
    import _ctypes  # noqa: F401

    from cni import (  # noqa: F401
        delegate,
        main,
        netlink,
        verb_add,
        verb_check,
        verb_del,
        verb_gc,
        verb_status,
        verbs,
    )

    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        netlink.setns(here)  # into the namespace we are in: builds the ctypes binding once
    finally:
        os.close(here)


def bind(path: str) -> socket.socket:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(path)
        raise OSError(f"{path}: a flatroute cni service is already listening there")
    except (FileNotFoundError, ConnectionRefusedError, TimeoutError):
        pass  # nothing there, or a stale socket: replaced below
    finally:
        probe.close()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = os.path.join(directory, f".cni-{os.getpid()}.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(tmp)  # mode 0600 from the start: no window with a wider one
        finally:
            os.umask(old)
        sock.listen(128)
        os.replace(tmp, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return sock


def serve(path: str, *, read_timeout: float = 10, max_seconds: float = 300,
          delete_queue: str = delqueue.DEFAULT_DIR, spare: int = 4, log: Any = None) -> int:
    if log is None:
        from flatroute.logging import get_logger

        log = get_logger(socket=path)
    preload()
    import gc

    gc.collect()
    gc.freeze()  # workers never scan (and so never copy-on-write) what the parent holds
    sock = bind(path)
    inode = os.stat(path).st_ino
    workers = pool.Pool(sock, lambda conn: handle(conn, read_timeout, log), spare=spare,
                        max_seconds=max_seconds, log=log)

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, stop) for sig in _SIGNALS}
    log.info("cni_serve_started", pid=os.getpid(), delete_queue=delete_queue)
    drained = 0.0
    try:
        while True:
            if time.monotonic() - drained >= 1.0:  # the first pass before the first request
                delqueue.drain(delete_queue, run_forked, log)
                drained = time.monotonic()
            workers.fill()
            workers.wait(1.0)
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        in_flight = workers.stop()
        sock.close()
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        log.info("cni_serve_stopped", in_flight=in_flight)
    return 0


def _error(code: int, msg: str, details: str = "") -> bytes:
    from cni import jsonlite
    from cni.errors import CniError

    return (jsonlite.dumps(CniError(code, msg, details).to_dict("1.1.0")) + "\n").encode()


def run_request(env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """The plugin's verb for one request, in this (forked) process: exit code and stdout."""
    import cni.main

    # The verb (and any delegated IPAM plugin it runs) sees the client's CNI_* only.
    for name in [n for n in os.environ if n.startswith("CNI_")]:
        del os.environ[name]
    os.environ.update(env)
    text = io.StringIO()
    code = cni.main.run(env, io.BytesIO(stdin), text)
    return code, text.getvalue().encode("utf-8", "surrogateescape")


def run_forked(env: dict[str, str], stdin: bytes) -> tuple[int, int | None]:
    """run_request in a child (as a live request runs): its exit code and CNI error code."""
    rfd, wfd = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(rfd)
                for sig in _SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                status, out = run_request(env, stdin)
                with os.fdopen(wfd, "wb") as fh:
                    fh.write(out)
            finally:
                os._exit(status)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code, (_cni_code(out) if code else None)


def handle(conn: socket.socket, read_timeout: float, log: Any) -> None:
    """One request on `conn`, in this (forked) process: read, run, answer, log."""
    from cni.errors import DECODE, NOT_AVAILABLE

    start = time.monotonic()
    env: dict[str, str] = {}
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                    struct.calcsize("3i")))
    if uid not in (0, os.geteuid()):
        code, out = 1, _error(NOT_AVAILABLE, "the flatroute cni service serves root only")
    else:
        try:
            env, stdin = wire.decode_request(wire.reader(conn, read_timeout))
        except (wire.FrameError, OSError) as exc:  # TimeoutError is an OSError
            code, out = 1, _error(DECODE, "malformed request from the flatroute-cni client",
                                  str(exc))
        else:
            code, out = run_request(env, stdin)
    sent = True
    try:
        conn.settimeout(10)
        conn.sendall(wire.encode_response(code, out))
    except OSError:
        sent = False  # the client went away: nothing to tell it
    finally:
        conn.close()
    fields: dict[str, Any] = {"command": env.get("CNI_COMMAND", ""),
                              "container_id": env.get("CNI_CONTAINERID", ""), "exit": code,
                              "ms": round((time.monotonic() - start) * 1000, 1)}
    if code:
        fields["code"] = _cni_code(out)
    if not sent:
        fields["client_gone"] = True
    (log.info if code == 0 else log.warning)("cni_request", **fields)


def _cni_code(out: bytes) -> int | None:
    from cni import jsonlite

    try:
        doc = jsonlite.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    code = doc.get("code") if isinstance(doc, dict) else None
    return code if isinstance(code, int) else None


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", default=DEFAULT_SOCKET,
                   help=f"unix socket to listen on (default {DEFAULT_SOCKET}); the client "
                   "reads FLATROUTE_CNI_SOCKET, else the path compiled in at install")
    p.add_argument("--read-timeout", type=float, default=10,
                   help="seconds a client has to send its whole request (default 10)")
    p.add_argument("--max-seconds", type=float, default=300,
                   help="kill a request still running after this many seconds (default 300)")
    p.add_argument("--spare", type=int, default=4,
                   help="workers forked ahead, waiting for a request each (default 4)")
    p.add_argument("--delete-queue", default=delqueue.DEFAULT_DIR,
                   help="DELs the client queued while no service listened, run at start and "
                   f"then as they appear (default {delqueue.DEFAULT_DIR})")
    p.add_argument("--log-format", choices=("json", "console"), default="json")


def run(args: argparse.Namespace) -> int:
    from flatroute import logging as flog

    flog.configure(json=args.log_format == "json")
    try:
        return serve(args.socket, read_timeout=args.read_timeout, max_seconds=args.max_seconds,
                     delete_queue=args.delete_queue, spare=args.spare)
    except OSError as exc:
        print(f"flatroute cni serve: {exc}", file=sys.stderr)
        return 1
