"""A small typed rtnetlink path built on the standard library: batched route writes and dumps.

Why this exists beside pyroute2: pyroute2 builds every message in Python objects, about 0.5 ms a
route (1.5-2k routes/s), and its `get_routes()` takes ~1.5 s to list 10,000 routes. Installing a
few thousand learned routes must not take seconds, and the reconciler lists the kernel on every
pass. Here a route message is a few `struct.pack` calls, messages are sent many to a `send()`,
and every message asks for an ACK that we read and check (errors carry the sequence number, so
we know exactly which route failed). Dumps ask the kernel to filter by protocol (strict
checking), so listing our routes does not cost a parse of everyone else's.

Scope on purpose: unicast routes with a gateway and/or device, ECMP multipath, IPv4 over an IPv6
next hop (RTA_VIA), seg6 encapsulation routes (pyroute2 0.9 knows no `encap.red` and silently
writes `encap` instead), and *parsing* of seg6local. Writing seg6local SIDs (a handful per node)
stays with pyroute2 in `netlink.py`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from speaker.routes import (
    MAIN_TABLE,
    Nexthop,
    Route,
    Seg6Encap,
    Seg6Local,
    route_kind,
    sorted_nexthops,
)

# -- constants (linux/netlink.h, linux/rtnetlink.h, linux/lwtunnel.h, linux/seg6*.h) ----------
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
F_REQUEST, F_MULTI, F_ACK = 0x1, 0x2, 0x4
F_DUMP = 0x300
F_REPLACE, F_EXCL, F_CREATE = 0x100, 0x200, 0x400
SOL_NETLINK, NETLINK_GET_STRICT_CHK, NETLINK_EXT_ACK, NETLINK_CAP_ACK = 270, 12, 11, 10
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH = 1, 4, 5, 6, 9
RTA_TABLE, RTA_VIA, RTA_ENCAP_TYPE, RTA_ENCAP = 15, 18, 21, 22
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
LWTUNNEL_ENCAP_SEG6, LWTUNNEL_ENCAP_SEG6_LOCAL = 5, 7
SEG6_IPTUNNEL_SRH = 1
SEG6_MODES = {0: "inline", 1: "encap", 2: "l2encap", 3: "encap.red", 4: "l2encap.red"}
SEG6_MODE_CODES = {"encap": 1, "encap.red": 3}
SEG6_LOCAL_ACTION, SEG6_LOCAL_TABLE, SEG6_LOCAL_NH4, SEG6_LOCAL_NH6 = 1, 3, 4, 5
SEG6_LOCAL_OIF, SEG6_LOCAL_VRFTABLE = 7, 9
SEG6_ACTIONS = {1: "End", 2: "End.X", 3: "End.T", 4: "End.DX2", 5: "End.DX6", 6: "End.DX4",
                7: "End.DT6", 8: "End.DT4", 9: "End.B6", 10: "End.B6.Encaps", 16: "End.DT46"}

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_RTNH = struct.Struct("=HBBi")  # len, flags, hops, ifindex
_ERR = struct.Struct("=i")

#: messages per send(). Only the last message of a chunk asks for an ACK: the kernel handles the
#: messages of one send in order and reports every failure anyway (NLMSG_ERROR), so the last ACK
#: is a barrier after which every error of the chunk has been read. One recv() per chunk instead
#: of one per route is most of the speed-up over per-message ACKs.
CHUNK = 1024


class NetlinkError(OSError):
    """The kernel refused one or more route messages."""

    def __init__(self, failures: list[tuple[Route, int]]) -> None:
        self.failures = failures
        first_route, first_errno = failures[0]
        super().__init__(first_errno, f"{len(failures)} route operation(s) failed; first: "
                         f"{first_route.dst}: {os.strerror(first_errno)}")


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    n = _RTA.size + len(payload)
    return _RTA.pack(n, kind) + payload + b"\0" * (_align(n) - n)


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


@functools.lru_cache(maxsize=1024)
def _gw_attr(dst_version: int, gw: str) -> bytes:
    addr = ip_address(gw)
    if addr.version == dst_version:
        return _attr(RTA_GATEWAY, addr.packed)
    # RFC 8950/5549: an IPv4 route through an IPv6 next hop
    return _attr(RTA_VIA, struct.pack("=H", _family(addr.version)) + addr.packed)


@dataclass(frozen=True, slots=True)
class Op:
    """One route write: `add` (create, fail if it exists), `replace` (ours), `delete`."""

    action: str
    route: Route


def pack_route(op: Op, seq: int, ifindex: dict[str, int], protocol: int,
               ack: bool = True) -> bytes:
    """Build one RTM_NEWROUTE/RTM_DELROUTE message for a plain or multipath route."""
    r = op.route
    if isinstance(r.encap, Seg6Local):
        raise ValueError(f"{r.dst}: seg6local routes are written through pyroute2")
    has_gw = any(nh.gateway for nh in r.nexthops)
    if op.action == "delete":
        # Like iproute2: scope "nowhere" and no type match any route at the key; the protocol
        # is still checked by the kernel, so a foreign route at the same key is never deleted.
        scope, rtype = RT_SCOPE_NOWHERE, 0
    else:
        scope, rtype = (RT_SCOPE_UNIVERSE if has_gw else RT_SCOPE_LINK), RTN_UNICAST
    rtm = _RTMSG.pack(_family(r.dst.version), r.dst.prefixlen, 0, 0,
                      r.table if r.table < 256 else 252, protocol, scope, rtype, 0)
    attrs = [_attr(RTA_DST, r.dst.network_address.packed)]
    if r.table >= 256:
        attrs.append(_attr(RTA_TABLE, struct.pack("=I", r.table)))
    if r.metric:
        attrs.append(_attr(RTA_PRIORITY, struct.pack("=I", r.metric)))
    if op.action != "delete":
        if len(r.nexthops) == 1:
            nh = r.nexthops[0]
            if nh.gateway:
                attrs.append(_gw_attr(r.dst.version, nh.gateway))
            if nh.ifname:
                attrs.append(_attr(RTA_OIF, struct.pack("=i", ifindex[nh.ifname])))
        elif r.nexthops:
            parts = []
            for nh in r.nexthops:
                inner = _gw_attr(r.dst.version, nh.gateway) if nh.gateway else b""
                idx = ifindex[nh.ifname] if nh.ifname else 0
                parts.append(_RTNH.pack(_RTNH.size + len(inner), 0, 0, idx) + inner)
            attrs.append(_attr(RTA_MULTIPATH, b"".join(parts)))
    if isinstance(r.encap, Seg6Encap) and op.action != "delete":
        attrs += [_attr(RTA_ENCAP_TYPE, struct.pack("=H", LWTUNNEL_ENCAP_SEG6)),
                  _attr(RTA_ENCAP, _attr(SEG6_IPTUNNEL_SRH, pack_srh(r.encap)))]
    body = rtm + b"".join(attrs)
    if op.action == "delete":
        mtype, flags = RTM_DELROUTE, F_REQUEST
    elif op.action == "replace":
        mtype, flags = RTM_NEWROUTE, F_REQUEST | F_CREATE | F_REPLACE
    elif op.action == "add":
        mtype, flags = RTM_NEWROUTE, F_REQUEST | F_CREATE | F_EXCL
    else:
        raise ValueError(f"unknown route action {op.action!r}")
    if ack:
        flags |= F_ACK
    return _NLMSG.pack(_NLMSG.size + len(body), mtype, flags, seq, 0) + body


def pack_srh(encap: Seg6Encap) -> bytes:
    """struct seg6_iptunnel_encap: mode, then the SRH with its segments listed last-first."""
    if encap.mode not in SEG6_MODE_CODES:
        raise ValueError(f"unsupported seg6 mode {encap.mode!r}")
    n = len(encap.segments)
    if not 1 <= n <= 64:
        raise ValueError("a seg6 route needs 1 to 64 segments")
    srh = struct.pack("=BBBBBBH", 0, 2 * n, 4, n - 1, n - 1, 0, 0)
    segs = b"".join(s.packed for s in reversed(encap.segments))
    return struct.pack("=i", SEG6_MODE_CODES[encap.mode]) + srh + segs


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + _RTA.size <= end:
        n, kind = _RTA.unpack_from(data, offset)
        if n < _RTA.size:
            return
        yield kind & 0x3FFF, data[offset + _RTA.size: offset + n]
        offset += _align(n)


def _addr(version: int, raw: bytes) -> str:
    return str(IPv4Address(raw) if version == 4 and len(raw) == 4 else IPv6Address(raw[:16]))


def _via(raw: bytes) -> str:
    (fam,) = struct.unpack_from("=H", raw)
    return _addr(4 if fam == socket.AF_INET else 6, raw[2:])


def parse_seg6(raw: bytes) -> Seg6Encap | None:
    for kind, val in _attrs(raw, 0, len(raw)):
        if kind == SEG6_IPTUNNEL_SRH and len(val) >= 12:
            (mode,) = struct.unpack_from("=i", val)
            first = val[4 + 4]  # ipv6_sr_hdr.first_segment
            segs = [IPv6Address(val[12 + 16 * i: 28 + 16 * i]) for i in range(first + 1)]
            return Seg6Encap(SEG6_MODES.get(mode, str(mode)), tuple(reversed(segs)))
    return None


def parse_seg6local(raw: bytes) -> Seg6Local:
    action, nh4, nh6, table, vrf = "", None, None, None, None
    for kind, val in _attrs(raw, 0, len(raw)):
        if kind == SEG6_LOCAL_ACTION:
            (code,) = struct.unpack_from("=I", val)
            action = SEG6_ACTIONS.get(code, str(code))
        elif kind == SEG6_LOCAL_NH4:
            nh4 = IPv4Address(val[:4])
        elif kind == SEG6_LOCAL_NH6:
            nh6 = IPv6Address(val[:16])
        elif kind == SEG6_LOCAL_TABLE:
            (table,) = struct.unpack_from("=I", val)
        elif kind == SEG6_LOCAL_VRFTABLE:
            (vrf,) = struct.unpack_from("=I", val)
    return Seg6Local(action, nh4, nh6, table, vrf)


def parse_route(data: bytes, offset: int, end: int, ifname: dict[int, str]) -> tuple[Route, int]:
    """Parse one RTM_NEWROUTE body at offset; returns the route and its protocol number."""
    fam, dst_len, _src_len, _tos, table, proto, _scope, _rtype, _flags = \
        _RTMSG.unpack_from(data, offset)
    version = 4 if fam == socket.AF_INET else 6
    dst_raw = b"\0" * (4 if version == 4 else 16)
    gw: str | None = None
    oif: int | None = None
    metric = 0
    nexthops: list[Nexthop] = []
    encap_type = 0
    encap_raw = b""
    for kind, val in _attrs(data, offset + _RTMSG.size, end):
        if kind == RTA_DST:
            dst_raw = val
        elif kind == RTA_TABLE:
            (table,) = struct.unpack_from("=I", val)
        elif kind == RTA_PRIORITY:
            (metric,) = struct.unpack_from("=I", val)
        elif kind == RTA_GATEWAY:
            gw = _addr(version, val)
        elif kind == RTA_VIA:
            gw = _via(val)
        elif kind == RTA_OIF:
            (oif,) = struct.unpack_from("=i", val)
        elif kind == RTA_ENCAP_TYPE:
            (encap_type,) = struct.unpack_from("=H", val)
        elif kind == RTA_ENCAP:
            encap_raw = val
        elif kind == RTA_MULTIPATH:
            pos = 0
            while pos + _RTNH.size <= len(val):
                n, _f, _h, idx = _RTNH.unpack_from(val, pos)
                if n < _RTNH.size:
                    break
                ngw = None
                for k2, v2 in _attrs(val, pos + _RTNH.size, pos + n):
                    if k2 == RTA_GATEWAY:
                        ngw = _addr(version, v2)
                    elif k2 == RTA_VIA:
                        ngw = _via(v2)
                nexthops.append(Nexthop(ngw, ifname.get(idx, str(idx)) if idx else None))
                pos += _align(n)
    if not nexthops and (gw or oif):
        nexthops.append(Nexthop(gw, ifname.get(oif, str(oif)) if oif else None))
    encap: Seg6Encap | Seg6Local | None = None
    if encap_type == LWTUNNEL_ENCAP_SEG6:
        encap = parse_seg6(encap_raw)
    elif encap_type == LWTUNNEL_ENCAP_SEG6_LOCAL:
        encap = parse_seg6local(encap_raw)
    dst = ip_network(f"{_addr(version, dst_raw)}/{dst_len}")
    route = Route(dst, sorted_nexthops(nexthops), encap, table, metric)
    return Route(route.dst, route.nexthops, route.encap, route.table, route.metric,
                 route_kind(route)), proto


def link_names() -> dict[int, str]:
    """ifindex -> name for this network namespace (from /sys, no netlink needed)."""
    out: dict[int, str] = {}
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return out
    for name in names:
        idx = socket.if_nametoindex(name) if name else 0
        out[idx] = name
    return out


class Rtnl:
    """One NETLINK_ROUTE socket in the current namespace; not thread-safe (use one per thread)."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        for opt in (NETLINK_GET_STRICT_CHK, NETLINK_CAP_ACK):
            with contextlib.suppress(OSError):
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
        self.sock.bind((0, 0))
        self.seq = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply(self, ops: Iterable[Op], index: dict[str, int] | None = None
              ) -> list[tuple[Route, int]]:
        """Send the ops in batches, check every ACK; returns (route, errno) for each failure.

        A delete of a route that is already gone (ESRCH) counts as success: idempotent.
        `index` (name -> ifindex) defaults to what /sys shows, which is this namespace's only
        when sysfs was mounted in it (`ip netns exec` does; a bare `unshare` does not).
        """
        if index is None:
            index = {name: idx for idx, name in link_names().items()}
        failures: list[tuple[Route, int]] = []
        batch: list[Op] = []
        for op in ops:
            batch.append(op)
            if len(batch) >= CHUNK:
                failures += self._send_chunk(batch, index)
                batch = []
        if batch:
            failures += self._send_chunk(batch, index)
        return failures

    def _send_chunk(self, ops: list[Op], index: dict[str, int]) -> list[tuple[Route, int]]:
        pending: dict[int, Op] = {}
        parts = []
        failures: list[tuple[Route, int]] = []
        ready: list[tuple[int, Op]] = []
        for op in ops:
            missing = [nh.ifname for nh in op.route.nexthops
                       if nh.ifname and nh.ifname not in index]
            if missing and op.action != "delete":
                failures.append((op.route, errno.ENODEV))
                continue
            self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
            ready.append((self.seq, op))
        last = ready[-1][0] if ready else -1
        for seq, op in ready:
            parts.append(pack_route(op, seq, index, self.protocol, ack=seq == last))
            pending[seq] = op
        if parts:
            self.sock.sendall(b"".join(parts))
        while last in pending:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + _NLMSG.size <= len(data):
                n, mtype, _fl, seq, _pid = _NLMSG.unpack_from(data, off)
                if mtype == NLMSG_ERROR and seq in pending:
                    (err,) = _ERR.unpack_from(data, off + _NLMSG.size)
                    op = pending.pop(seq)
                    if err and not (op.action == "delete" and -err == errno.ESRCH):
                        failures.append((op.route, -err))
                off += _align(n) if n else len(data)
        return failures

    def dump(self, *, all_protocols: bool = False) -> list[Route]:
        """Our routes (or every route), IPv4 and IPv6, from every table."""
        names = link_names()
        out: list[Route] = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
            proto = 0 if all_protocols else self.protocol
            body = _RTMSG.pack(fam, 0, 0, 0, 0, proto, 0, 0, 0)
            self.sock.sendall(_NLMSG.pack(_NLMSG.size + len(body), RTM_GETROUTE,
                                          F_REQUEST | F_DUMP, self.seq, 0) + body)
            done = False
            while not done:
                data = self.sock.recv(1 << 20)
                off = 0
                while off + _NLMSG.size <= len(data):
                    n, mtype, _fl, seq, _pid = _NLMSG.unpack_from(data, off)
                    if n < _NLMSG.size:
                        break
                    if seq == self.seq:
                        if mtype == NLMSG_DONE:
                            done = True
                        elif mtype == NLMSG_ERROR:
                            (err,) = _ERR.unpack_from(data, off + _NLMSG.size)
                            if err:
                                raise OSError(-err, os.strerror(-err))
                        elif mtype == RTM_NEWROUTE:
                            rproto = data[off + _NLMSG.size + 5]
                            # The kernel filters by protocol under strict checking; filter
                            # again in case it did not (older kernels).
                            if all_protocols or rproto == self.protocol:
                                route, _p = parse_route(data, off + _NLMSG.size, off + n, names)
                                out.append(route)
                    off += _align(n)
        return out


def bulk_routes(count: int, *, base: str = "10.128.0.0", gateway: str | None = None,
                ifname: str | None = None, table: int = MAIN_TABLE) -> list[Route]:
    """`count` distinct /32 routes for benchmarks and tests."""
    start = int(IPv4Address(base))
    nh = (Nexthop(gateway, ifname),)
    return [Route(ip_network(f"{IPv4Address(start + i)}/32"), nh, None, table, 0, "bulk")
            for i in range(count)]
