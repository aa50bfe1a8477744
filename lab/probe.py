"""Ping many targets at once from inside one namespace, with raw ICMP sockets (stdlib only).

    python3 -m lab.probe [--tries 3] [--wait 1.0] ADDR...

Prints one JSON object: {"ADDR": rtt_ms or null}. Run by `flatroute lab test` inside each
pod's namespace, so a matrix of N pods costs N process starts, not N^2.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def probe(targets: list[str], tries: int = 3, wait: float = 1.0) -> dict[str, float | None]:
    ident = os.getpid() & 0xFFFF
    s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    result: dict[str, float | None] = dict.fromkeys(targets)
    sent: dict[tuple[str, int], float] = {}
    try:
        for attempt in range(tries):
            for seq, target in enumerate(targets):
                if result[target] is not None:
                    continue
                v6 = ":" in target
                payload = struct.pack("!d", time.monotonic())
                number = attempt * 4096 + seq
                if v6:
                    packet = struct.pack("!BBHHH", 128, 0, 0, ident, number) + payload
                    s6.sendto(packet, (target, 0))  # the kernel fills the ICMPv6 checksum
                else:
                    header = struct.pack("!BBHHH", 8, 0, 0, ident, number)
                    csum = _checksum(header + payload)
                    packet = struct.pack("!BBHHH", 8, 0, csum, ident, number) + payload
                    s4.sendto(packet, (target, 0))
                sent[(target, number)] = time.monotonic()
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(v is None for v in result.values()):
                ready, _, _ = select.select([s4, s6], [], [], max(0.0, deadline -
                                                                  time.monotonic()))
                for sock in ready:
                    data, addr = sock.recvfrom(2048)
                    if sock is s4:
                        data = data[(data[0] & 0x0F) * 4:]
                        if len(data) < 8 or data[0] != 0:
                            continue
                    elif len(data) < 8 or data[0] != 129:
                        continue
                    _, _, _, rid, number = struct.unpack("!BBHHH", data[:8])
                    src = addr[0].split("%")[0]
                    started = sent.get((src, number))
                    if rid == ident and started is not None and result.get(src) is None:
                        result[src] = round((time.monotonic() - started) * 1000, 3)
            if all(v is not None for v in result.values()):
                break
    finally:
        s4.close()
        s6.close()
    return result


def main(argv: list[str]) -> int:
    tries, wait, targets = 3, 1.0, []
    it = iter(argv)
    for arg in it:
        if arg == "--tries":
            tries = int(next(it))
        elif arg == "--wait":
            wait = float(next(it))
        else:
            targets.append(arg)
    # Normalise IPv6 text so replies (which carry the kernel's spelling) match.
    norm = {socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, t))
            if ":" in t else t: t for t in targets}
    res = probe(list(norm), tries, wait)
    print(json.dumps({norm[k]: v for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
