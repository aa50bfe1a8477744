"""Unnumbered uplinks: IPv6 router discovery (RFC 4861) on one link, both ways.

An unnumbered ToR has no address the fabric could name; BGP runs over the IPv6 link-local
addresses of the link (as FRR's `neighbor PORT interface` does). The ToR advertises itself:
we send a Router Solicitation to all-routers (ff02::2) out of the uplink and take the source
of the first Router Advertisement that comes back on it. The ToR also sends them unsolicited
(FRR: every 10 s on interfaces with BGP interface peers), so a lost solicitation only costs
time. Only advertisements with hop limit 255 count (RFC 4861 6.1.2: sent on this link, not
routed to us) and only from a link-local source.

The other way round, the ToR learns *our* link-local address the same way: FRR's interface
peers stay unresolved (and refuse our connection) until the far end has sent a Router
Advertisement. So the speaker advertises too, with router lifetime 0: "I am on this link, do
not route through me by default" (RFC 4861 4.2), which no host or router turns into a route.

Raw ICMPv6 sockets, bound to the uplink: need CAP_NET_RAW (the speaker has it for BFD).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from ipaddress import IPv6Address

from flatroute.errors import AdapterError

ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
ALL_ROUTERS = "ff02::2"
ALL_NODES = "ff02::1"
SOURCE_LINK_LAYER_ADDRESS = 1  # the ND option type
#: <netinet/icmp6.h>: ICMP6_FILTER, a 256-bit mask of the types to block
ICMP6_FILTER = 1
#: how often to repeat the solicitation while waiting (RFC 4861 RTR_SOLICITATION_INTERVAL is
#: 4 s; routers rate-limit answers, so a few tries within the wait are plenty)
RESEND_EVERY = 0.5


def _only_advertisements() -> bytes:
    blocked = [0xFFFFFFFF] * 8
    blocked[ROUTER_ADVERTISEMENT >> 5] &= ~(1 << (ROUTER_ADVERTISEMENT & 31))
    return struct.pack("=8I", *blocked)


def _hop_limit(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(data) >= 4:
            return int(struct.unpack("=i", data[:4])[0])
    return None


def _raw_socket(interface: str, index: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    except OSError as exc:
        raise AdapterError(f"router discovery on {interface}: cannot open a raw ICMPv6 "
                           f"socket ({exc.strerror}; needs CAP_NET_RAW)") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode() + b"\0")
        # Neighbour discovery messages carry hop limit 255, or receivers drop them.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)  # not our own
    except OSError as exc:
        sock.close()
        raise AdapterError(f"router discovery on {interface}: {exc.strerror}") from exc
    return sock


def _index(interface: str) -> int:
    try:
        return socket.if_nametoindex(interface)
    except OSError as exc:
        raise AdapterError(f"uplink {interface} not found") from exc


def advertisement(mac: bytes | None) -> bytes:
    """A Router Advertisement with router lifetime 0 and, when known, our link-layer address
    (so the receiver needs no neighbour solicitation to answer)."""
    ra = struct.pack("!BBHBBHII", ROUTER_ADVERTISEMENT, 0, 0, 0, 0, 0, 0, 0)
    if mac is not None and len(mac) == 6:
        ra += bytes([SOURCE_LINK_LAYER_ADDRESS, 1]) + mac
    return ra


def advertise(interface: str) -> bool:
    """Send one advertisement to all nodes on `interface`; False if the link would not take it
    (down, or no link-local address yet). AdapterError when it cannot be tried at all."""
    index = _index(interface)
    mac: bytes | None = None
    with contextlib.suppress(OSError, ValueError), \
            open(f"/sys/class/net/{interface}/address", encoding="ascii") as fh:
        mac = bytes.fromhex(fh.read().strip().replace(":", ""))
    with _raw_socket(interface, index) as sock:
        try:
            sock.sendto(advertisement(mac), (ALL_NODES, 0, 0, index))
        except OSError:
            return False
    return True


def find_router(interface: str, timeout: float = 1.0) -> IPv6Address | None:
    """The link-local address of a router advertising on `interface`, or None within timeout.

    Raises AdapterError when the interface does not exist or the socket cannot be made (no
    CAP_NET_RAW); a link that is down or silent is None, not an error.
    """
    index = _index(interface)
    with _raw_socket(interface, index) as sock:
        try:
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _only_advertisements())
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        except OSError as exc:
            raise AdapterError(f"router discovery on {interface}: {exc.strerror}") from exc
        solicitation = bytes([ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0])  # kernel sums it
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            if now >= next_send:
                # link down or no link-local address yet: keep listening all the same
                with contextlib.suppress(OSError):
                    sock.sendto(solicitation, (ALL_ROUTERS, 0, 0, index))
                next_send = now + RESEND_EVERY
            ready, _, _ = select.select([sock], [], [], min(deadline, next_send) - now)
            if not ready:
                continue
            data, ancillary, _flags, source = sock.recvmsg(2048, socket.CMSG_SPACE(4))
            if not data or data[0] != ROUTER_ADVERTISEMENT or _hop_limit(ancillary) != 255:
                continue
            address = IPv6Address(str(source[0]).split("%", 1)[0])
            if address.is_link_local:
                return address
