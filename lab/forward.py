"""Forward a TCP port on 127.0.0.1 inside a lab namespace to 127.0.0.1 in this namespace:
how the speakers in the node namespaces reach the (fake) Kubernetes API server of
`flatroute lab up --kubernetes`, without any interface in the host's namespace.

    python -m lab.forward NS PORT [NS PORT ...]   # runs until SIGTERM

A socket keeps the namespace it was created in: the listener is made after setns() into the
namespace (on this thread only, then back), and the outbound connection is made here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listen_in(ns: str, port: int) -> socket.socket:
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(there)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(64)
        finally:
            _setns(here)
    finally:
        os.close(here)
        os.close(there)
    return sock


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class Forwarder:
    def __init__(self, ns: str, port: int, target_port: int | None = None) -> None:
        self.listener = listen_in(ns, port)
        self.target = ("127.0.0.1", target_port or port)
        self.listener.settimeout(0.5)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            try:
                out = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            out.settimeout(None)
            for a, b in ((conn, out), (out, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


def main(argv: list[str]) -> int:
    import signal
    import sys

    if len(argv) < 2 or len(argv) % 2:
        print("usage: python -m lab.forward NS PORT [NS PORT ...]", file=sys.stderr)
        return 2
    forwarders = [Forwarder(ns, int(port)) for ns, port in zip(argv[::2], argv[1::2],
                                                                  strict=True)]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for f in forwarders:
        f.close()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
