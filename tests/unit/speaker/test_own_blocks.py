"""The node's own pod blocks are unreachable routes of ours: a packet to an unused pod address
gets ICMP unreachable here instead of bouncing between node and ToR (no root)."""

from __future__ import annotations

import socket
from ipaddress import ip_network
from pathlib import Path

import rtnetlink as rt
from flatroute import CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL, nodestate
from speaker import reconcile, rtnl
from speaker.routes import UNREACHABLE, Nexthop, Route
from speaker.rtnl import Op
from tests.unit.speaker.harness import A, B, Harness, spec


def test_every_own_block_gets_one_unreachable_route(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec(podBlocks={"ipv4": ["10.244.0.0/26"], "ipv6": ["fd00:244::/122"]}))
    st = h.once()
    got = sorted((str(r.dst), r.metric) for r in h.kernel.routes.values()
                 if r.kind == UNREACHABLE)
    assert got == [("10.244.0.0/26", 0), ("fd00:244::/122", 1024)]
    assert st.installed["unreachable"] == 2
    assert st.announced == ("10.244.0.0/26",)  # announcements as before (IPv4 sessions)
    ops = len(h.kernel.ops)
    h.once()
    assert len(h.kernel.ops) == ops  # applying again changes nothing


def test_a_block_leaving_the_node_state_takes_its_route_along(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    h.once()
    h.write(spec(podBlocks={"ipv4": ["10.244.0.64/26"], "ipv6": []}))
    h.once()
    assert [str(r.dst) for r in h.kernel.routes.values() if r.kind == UNREACHABLE] == [
        "10.244.0.64/26"]


def test_a_tor_announcing_our_own_block_back_is_not_installed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    h.once()
    h.up(A, routes={"0.0.0.0/0": A, "10.244.0.0/26": A})
    h.up(B, routes={"0.0.0.0/0": B})
    h.once(advance=3.0)
    r = h.kernel.routes[(4, "10.244.0.0/26", 254, 0)]
    assert r.kind == UNREACHABLE and r.nexthops == ()


def test_the_unreachable_route_is_written_and_read_as_rtn_unreachable() -> None:
    st = nodestate.from_spec(spec())
    (route,) = reconcile.own_blocks(st)
    _mtype, _flags, body = rtnl.route_request(Op("add", route), {}, ROUTE_PROTOCOL)
    fam, dst_len, _s, _t, _table, proto, _scope, rtype, _f = rt.RTMSG.unpack_from(body)
    assert (fam, dst_len, proto, rtype) == (socket.AF_INET, 26, ROUTE_PROTOCOL,
                                            rt.RTN_UNREACHABLE)
    attrs = rt.parse_attrs(body, rt.RTMSG.size, len(body))
    assert rt.RTA_OIF not in attrs and rt.RTA_GATEWAY not in attrs
    # the kernel reports it via lo; it is still the same route
    dumped, _ = rtnl.parse_route(body + rt.attr_u32(rt.RTA_OIF, 1), 0, len(body) + 8,
                                 {1: "lo"})
    assert dumped.kind == UNREACHABLE and dumped.same_as(route)
    assert not dumped.same_as(Route(ip_network("10.244.0.0/26"), (Nexthop("10.1.1.1"),)))


def test_the_cni_protocol_is_not_ours() -> None:
    assert CNI_ROUTE_PROTOCOL != ROUTE_PROTOCOL  # its /32s are never in our dump or diff
