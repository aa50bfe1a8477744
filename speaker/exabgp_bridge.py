"""The process ExaBGP runs for its API: relays its stdin/stdout to the speaker's Unix socket.

ExaBGP talks to a child over pipes; the speaker is ExaBGP's parent, not its child, so this tiny
relay connects the two. Standard library only, started with `python -I -S` (fast, isolated).
If the speaker goes away it exits; ExaBGP dies with the speaker anyway (parent-death signal).
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time


def main(argv: list[str]) -> int:
    path = argv[1]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + 30
    while True:
        try:
            sock.connect(path)
            break
        except OSError:
            if time.monotonic() > deadline:
                return 1
            time.sleep(0.05)
    sel = selectors.DefaultSelector()
    stdin = sys.stdin.buffer.fileno()
    stdout = sys.stdout.buffer.fileno()
    sel.register(stdin, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == stdin:
                data = os.read(stdin, 65536)
                if not data:
                    return 0
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    n = os.write(stdout, view)
                    view = view[n:]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
