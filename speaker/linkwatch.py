"""New interfaces as events: an rtnetlink RTMGRP_LINK listener (stdlib only).

The eBPF datapath must cover a pod from its first packets: the CNI plugin creates the pod's host
veth, and this listener wakes the speaker's reconcile loop at once, which attaches the
encapsulating program to it. The loop stays level-triggered (every pass lists the interfaces
itself); the event only makes the pass come sooner.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

RTMGRP_LINK = 1
RTM_NEWLINK = 16
IFLA_IFNAME = 3
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")


def names_in(data: bytes) -> list[str]:
    """Interface names of the RTM_NEWLINK messages in one netlink datagram."""
    out: list[str] = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size:
            break
        if mtype == RTM_NEWLINK:
            pos, end = off + _NLMSG.size + _IFINFO.size, off + length
            while pos + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if atype & 0x3FFF == IFLA_IFNAME:
                    out.append(data[pos + 4:pos + alen].split(b"\0", 1)[0].decode())
                pos += (alen + 3) & ~3
        off += (length + 3) & ~3
    return out


def watch(on_link: Callable[[str], None], stop: threading.Event) -> threading.Thread:
    """Call `on_link(name)` for every interface created or changed in this namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, RTMGRP_LINK))
    sock.settimeout(1.0)

    def loop() -> None:
        with contextlib.closing(sock):
            while not stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:  # ENOBUFS after a burst: the next pass lists everything
                    continue
                for name in names_in(data):
                    on_link(name)

    t = threading.Thread(target=loop, name="linkwatch", daemon=True)
    t.start()
    return t
