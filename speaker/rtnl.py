"""The speaker's typed rtnetlink path: `Route` values in and out, batched writes and dumps.

The bytes are the one stdlib codec's (`rtnetlink`, shared with the CNI plugin);
this module turns `speaker.routes.Route` values into route messages and back.

Why this exists beside pyroute2: pyroute2 builds every message in Python objects, about 0.5 ms a
route (1.5-2k routes/s), and its `get_routes()` takes ~1.5 s to list 10,000 routes. Installing a
few thousand learned routes must not take seconds, and the reconciler lists the kernel on every
pass. Here a route message is a few struct packs, messages are sent many to a `send()`,
and every message asks for an ACK that we read and check (errors carry the sequence number, so
we know exactly which route failed). Dumps ask the kernel to filter by protocol (strict
checking), so listing our routes does not cost a parse of everyone else's.

Scope on purpose: unicast routes with a gateway and/or device, ECMP multipath, IPv4 over an IPv6
next hop (RTA_VIA), seg6 encapsulation routes (pyroute2 0.9 knows no `encap.red` and silently
writes `encap` instead), and *parsing* of seg6local. Writing seg6local SIDs (a handful per node)
stays with pyroute2 in `netlink.py`.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
    ip_network,
)

import rtnetlink as rt
from speaker.routes import (
    MAIN_TABLE,
    UNREACHABLE,
    Nexthop,
    Route,
    Seg6Encap,
    Seg6Local,
    route_kind,
    sorted_nexthops,
)

SEG6_MODES = {0: "inline", 1: "encap", 2: "l2encap", 3: "encap.red", 4: "l2encap.red"}
SEG6_MODE_CODES = {"encap": 1, "encap.red": 3}
SEG6_ACTIONS = {1: "End", 2: "End.X", 3: "End.T", 4: "End.DX2", 5: "End.DX6", 6: "End.DX4",
                7: "End.DT6", 8: "End.DT4", 9: "End.B6", 10: "End.B6.Encaps", 16: "End.DT46"}

#: messages per send(). Only the last message of a chunk asks for an ACK (see
#: `rtnetlink.Socket.transact`): one recv() per chunk instead of one per route is most
#: of the speed-up over per-message ACKs.
CHUNK = 1024

#: route write -> (message type, flags)
_WRITES = {
    "delete": (rt.RTM_DELROUTE, 0),
    "replace": (rt.RTM_NEWROUTE, rt.NLM_F_CREATE | rt.NLM_F_REPLACE),
    "add": (rt.RTM_NEWROUTE, rt.NLM_F_CREATE | rt.NLM_F_EXCL),
}


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


@functools.lru_cache(maxsize=1024)
def _gw_attr(dst_version: int, gw: str) -> bytes:
    """RTA_GATEWAY, or RTA_VIA for an IPv4 route through an IPv6 next hop (RFC 8950/5549)."""
    return rt.gateway(_family(dst_version), ip_address(gw).packed)


@dataclass(frozen=True, slots=True)
class Op:
    """One route write: `add` (create, fail if it exists), `replace` (ours), `delete`."""

    action: str
    route: Route


def _nexthop_attrs(r: Route, ifindex: dict[str, int]) -> list[bytes]:
    if len(r.nexthops) == 1:
        nh = r.nexthops[0]
        out = [_gw_attr(r.dst.version, nh.gateway)] if nh.gateway else []
        if nh.ifname:
            out.append(rt.attr_i32(rt.RTA_OIF, ifindex[nh.ifname]))
        return out
    if r.nexthops:
        return [rt.multipath([
            (ifindex[nh.ifname] if nh.ifname else 0,
             _gw_attr(r.dst.version, nh.gateway) if nh.gateway else b"")
            for nh in r.nexthops])]
    return []


def route_request(op: Op, ifindex: dict[str, int], protocol: int) -> tuple[int, int, bytes]:
    """(type, flags, body) of the RTM_NEWROUTE/RTM_DELROUTE for a plain or multipath route."""
    r = op.route
    if isinstance(r.encap, Seg6Local):
        raise ValueError(f"{r.dst}: seg6local routes are written through pyroute2")
    if op.action not in _WRITES:
        raise ValueError(f"unknown route action {op.action!r}")
    mtype, flags = _WRITES[op.action]
    delete = op.action == "delete"
    if delete:
        # Like iproute2: scope "nowhere" and no type match any route at the key; the protocol
        # is still checked by the kernel, so a foreign route at the same key is never deleted.
        scope, rtype = rt.RT_SCOPE_NOWHERE, 0
    elif r.kind == UNREACHABLE:
        scope, rtype = rt.RT_SCOPE_UNIVERSE, rt.RTN_UNREACHABLE
    else:
        has_gw = any(nh.gateway for nh in r.nexthops)
        scope, rtype = (rt.RT_SCOPE_UNIVERSE if has_gw else rt.RT_SCOPE_LINK), rt.RTN_UNICAST
    parts = [rt.rtmsg(_family(r.dst.version), r.dst.prefixlen, protocol, scope, rtype, r.table),
             rt.attr(rt.RTA_DST, r.dst.network_address.packed), rt.table_attr(r.table)]
    if r.metric:
        parts.append(rt.attr_u32(rt.RTA_PRIORITY, r.metric))
    if not delete and r.kind != UNREACHABLE:
        parts += _nexthop_attrs(r, ifindex)
        if isinstance(r.encap, Seg6Encap):
            parts.append(pack_seg6(r.encap))
    return mtype, flags, b"".join(parts)


def pack_route(op: Op, seq: int, ifindex: dict[str, int], protocol: int,
               ack: bool = True) -> bytes:
    """One whole route message (header included), as `Rtnl.apply` sends it."""
    mtype, flags, body = route_request(op, ifindex, protocol)
    flags |= rt.NLM_F_REQUEST | (rt.NLM_F_ACK if ack else 0)
    return rt.message(mtype, flags, seq, body)


def pack_seg6(encap: Seg6Encap) -> bytes:
    """RTA_ENCAP_TYPE + RTA_ENCAP of a seg6 encapsulation route."""
    if encap.mode not in SEG6_MODE_CODES:
        raise ValueError(f"unsupported seg6 mode {encap.mode!r}")
    return rt.seg6_encap(SEG6_MODE_CODES[encap.mode], [s.packed for s in encap.segments])


def _addr(version: int, raw: bytes) -> str:
    return str(IPv4Address(raw) if version == 4 and len(raw) == 4 else IPv6Address(raw[:16]))


def _gateway(attrs: dict[int, bytes]) -> str | None:
    gw = rt.next_hop(attrs)
    return None if gw is None else _addr(4 if len(gw) == 4 else 6, gw)


def parse_seg6(raw: bytes) -> Seg6Encap | None:
    parsed = rt.parse_seg6_encap(raw)
    if parsed is None:
        return None
    mode, segs = parsed
    return Seg6Encap(SEG6_MODES.get(mode, str(mode)), tuple(IPv6Address(s) for s in segs))


def parse_seg6local(raw: bytes) -> Seg6Local:
    a = rt.parse_seg6local(raw)
    code = rt.u32(a.get(rt.SEG6_LOCAL_ACTION))
    nh4, nh6 = a.get(rt.SEG6_LOCAL_NH4), a.get(rt.SEG6_LOCAL_NH6)
    table, vrf = a.get(rt.SEG6_LOCAL_TABLE), a.get(rt.SEG6_LOCAL_VRFTABLE)
    return Seg6Local(SEG6_ACTIONS.get(code, str(code)) if rt.SEG6_LOCAL_ACTION in a else "",
                     IPv4Address(nh4[:4]) if nh4 else None,
                     IPv6Address(nh6[:16]) if nh6 else None,
                     rt.u32(table) if table else None, rt.u32(vrf) if vrf else None)


def _nexthops(a: dict[int, bytes], ifname: dict[int, str]) -> list[Nexthop]:
    def name(idx: int) -> str | None:
        return ifname.get(idx, str(idx)) if idx else None

    hops = [Nexthop(_gateway(hop), name(idx))
            for idx, hop in rt.parse_multipath(a.get(rt.RTA_MULTIPATH, b""))]
    gw, oif = _gateway(a), rt.i32(a.get(rt.RTA_OIF))
    if not hops and (gw or oif):
        hops.append(Nexthop(gw, name(oif)))
    return hops


def parse_route(data: bytes, offset: int, end: int, ifname: dict[int, str]) -> tuple[Route, int]:
    """Parse one RTM_NEWROUTE body at offset; returns the route and its protocol number."""
    fam, dst_len, _src_len, _tos, table, proto, _scope, rtype, _flags = \
        rt.RTMSG.unpack_from(data, offset)
    version = 4 if fam == socket.AF_INET else 6
    a = rt.parse_attrs(data, offset + rt.RTMSG.size, end)
    encap_type = rt.u16(a.get(rt.RTA_ENCAP_TYPE))
    encap: Seg6Encap | Seg6Local | None = None
    if encap_type == rt.LWTUNNEL_ENCAP_SEG6:
        encap = parse_seg6(a.get(rt.RTA_ENCAP, b""))
    elif encap_type == rt.LWTUNNEL_ENCAP_SEG6_LOCAL:
        encap = parse_seg6local(a.get(rt.RTA_ENCAP, b""))
    dst_raw = a.get(rt.RTA_DST, b"\0" * (4 if version == 4 else 16))
    dst = ip_network(f"{_addr(version, dst_raw)}/{dst_len}")
    if rtype == rt.RTN_UNREACHABLE:  # the kernel shows it via lo: it has no path of ours
        return Route(dst, (), None, rt.u32(a.get(rt.RTA_TABLE), table),
                     rt.u32(a.get(rt.RTA_PRIORITY)), UNREACHABLE), proto
    route = Route(dst, sorted_nexthops(_nexthops(a, ifname)), encap,
                  rt.u32(a.get(rt.RTA_TABLE), table), rt.u32(a.get(rt.RTA_PRIORITY)))
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
    """One NETLINK_ROUTE socket in the current namespace; not thread-safe (use one per thread).

    Dumps ask the kernel to filter by our protocol (strict checking)."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol
        self.rt = rt.Socket(strict=True, bufsize=1 << 20, sockbuf=4 << 20)

    def close(self) -> None:
        self.rt.close()

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
        failures: list[tuple[Route, int]] = []
        ready: list[Op] = []
        for op in ops:
            missing = [nh.ifname for nh in op.route.nexthops
                       if nh.ifname and nh.ifname not in index]
            if missing and op.action != "delete":
                failures.append((op.route, errno.ENODEV))
            else:
                ready.append(op)
        answers = self.rt.transact([route_request(op, index, self.protocol) for op in ready],
                                   ack_last_only=True)
        for op, answer in zip(ready, answers, strict=True):
            err = answer.errno
            if err and not (op.action == "delete" and err == errno.ESRCH):
                failures.append((op.route, err))
        return failures

    def addresses(self) -> dict[str, list[IPv4Interface | IPv6Interface]]:
        """Every interface (with or without addresses) and its IPv4 and IPv6 addresses."""
        names = link_names()
        out: dict[str, list[IPv4Interface | IPv6Interface]] = {n: [] for n in names.values()}
        for body in self.rt.dump(rt.RTM_GETADDR, rt.ifaddrmsg(socket.AF_UNSPEC, 0, 0),
                                 "list addresses"):
            fam, plen, _flags, _scope, index = rt.IFADDRMSG.unpack_from(body)
            if fam not in (socket.AF_INET, socket.AF_INET6) or index not in names:
                continue
            a = rt.parse_attrs(body, rt.IFADDRMSG.size, len(body))
            raw = a.get(rt.IFA_LOCAL) or a.get(rt.IFA_ADDRESS)
            if raw:
                version = 4 if fam == socket.AF_INET else 6
                iface = ip_interface(f"{_addr(version, raw)}/{plen}")
                out[names[index]].append(iface)
        return out

    def dump(self, *, all_protocols: bool = False) -> list[Route]:
        """Our routes (or every route), IPv4 and IPv6, from every table."""
        names = link_names()
        out: list[Route] = []
        proto = 0 if all_protocols else self.protocol
        for fam in (socket.AF_INET, socket.AF_INET6):
            for body in self.rt.dump(rt.RTM_GETROUTE, rt.rtmsg(fam, 0, proto, 0, 0, 0),
                                     "list routes"):
                # The kernel filters by protocol under strict checking; filter again in case
                # it did not (older kernels).
                if all_protocols or body[5] == self.protocol:
                    out.append(parse_route(body, 0, len(body), names)[0])
        return out


def bulk_routes(count: int, *, base: str = "10.128.0.0", gateway: str | None = None,
                ifname: str | None = None, table: int = MAIN_TABLE) -> list[Route]:
    """`count` distinct /32 routes for benchmarks and tests."""
    start = int(IPv4Address(base))
    nh = (Nexthop(gateway, ifname),)
    return [Route(ip_network(f"{IPv4Address(start + i)}/32"), nh, None, table, 0, "bulk")
            for i in range(count)]
