"""A tiny TCP service for the lab's endpoint pods, and its client (stdlib only).

    python -m lab.echo serve NAME PORT [PORT...]   # answers every connection with NAME
    python -m lab.echo get ADDRESS PORT            # prints the answer (exit 1 on failure)
"""

from __future__ import annotations

import socket
import sys
import threading


def serve(name: str, ports: list[int]) -> None:
    def loop(port: int) -> None:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
        s.bind(("::", port))
        s.listen(64)
        while True:
            conn, _ = s.accept()
            with conn:
                conn.sendall(f"{name}\n".encode())

    threads = [threading.Thread(target=loop, args=(p,), daemon=True) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def get(address: str, port: int, timeout: float = 2.0) -> str:
    with socket.create_connection((address, port), timeout=timeout) as s:
        return s.recv(256).decode().strip()


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1], [int(p) for p in argv[2:]])
        return 0
    if argv[:1] == ["get"]:
        try:
            print(get(argv[1], int(argv[2])))
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
