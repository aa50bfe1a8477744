"""uSIDs on the kernel datapath, the pure parts: the NEXT-C-SID netlink encoding, the kernel
forms of the uSID behaviours, and the datapath choice they drive (no root)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest
import yaml

import rtnetlink as rt
from flatroute.fabric import parse_fabric
from flatroute.nodestate import NodeState, from_plan
from flatroute.plan import plan
from speaker import reconcile
from speaker.capabilities import (
    BPF_NEEDS,
    KERNEL_NEEDS,
    Capabilities,
    Check,
    DatapathUnavailable,
    choose_datapath,
    kernel_needs,
    needed_missing,
    render_text,
    why_not_kernel,
)
from speaker.routes import Nexthop, Route, Seg6Local
from speaker.rtnl import Op, pack_next_csid, parse_route, route_request
from tests.conftest import EXAMPLES


def _attrs(raw: bytes) -> dict[int, bytes]:
    return rt.parse_attrs(raw)


def test_next_csid_end_is_encoded_as_uapi_lays_it_out() -> None:
    raw = pack_next_csid(Seg6Local("End", next_csid=16))
    a = _attrs(raw)
    assert struct.unpack("=H", a[rt.RTA_ENCAP_TYPE])[0] == rt.LWTUNNEL_ENCAP_SEG6_LOCAL == 7
    inner = _attrs(a[rt.RTA_ENCAP])
    assert struct.unpack("=I", inner[rt.SEG6_LOCAL_ACTION])[0] == 1  # SEG6_LOCAL_ACTION_END
    # SEG6_LOCAL_FLAVORS (11), nested, flagged NLA_F_NESTED as iproute2 writes it
    kinds = [(k, n) for k, n in _raw_kinds(a[rt.RTA_ENCAP])]
    assert (11 | 0x8000) in [k for k, _ in kinds]
    flv = _attrs(inner[rt.SEG6_LOCAL_FLAVORS])
    assert struct.unpack("=I", flv[1])[0] == 1 << 4          # SEG6_LOCAL_FLV_OP_NEXT_CSID
    assert (flv[2], flv[3]) == (bytes([32]), bytes([16]))    # lblen 32, nflen 16


def _raw_kinds(data: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos + 4 <= len(data):
        n, kind = rt.RTATTR.unpack_from(data, pos)
        out.append((kind, n))
        pos += (n + 3) & ~3
    return out


def test_next_csid_end_x_carries_its_neighbour_and_round_trips() -> None:
    encap = Seg6Local("End.X", nh6=IPv6Address("2001:db8::2"), next_csid=32)
    route = Route(ip_network("fcbb:bb00:2:e001::/64"), (Nexthop(None, "flrsid"),), encap,
                  metric=1024)
    mtype, _flags, body = route_request(Op("add", route), {"flrsid": 7}, 70)
    assert mtype == rt.RTM_NEWROUTE
    back, proto = parse_route(body, 0, len(body), {7: "flrsid"})
    assert proto == 70 and back.encap == encap and back.dst == route.dst


def test_next_csid_is_a_flavour_of_end_and_end_x_only() -> None:
    with pytest.raises(ValueError, match="flavour of End"):
        pack_next_csid(Seg6Local("End.DT46", next_csid=16))
    with pytest.raises(ValueError, match="flavour of End"):
        pack_next_csid(Seg6Local("End.X", next_csid=32))  # End.X needs its neighbour
    with pytest.raises(ValueError, match="through pyroute2"):
        route_request(Op("add", Route(ip_network("fc00::1/128"), (Nexthop(None, "x"),),
                                      Seg6Local("End"))), {"x": 1}, 70)


def _state(node: str) -> NodeState:
    doc = yaml.safe_load((EXAMPLES / "two-site-usid.yaml").read_text())
    p = plan(parse_fabric(yaml.safe_dump(doc)))
    return from_plan(p, p.node(node))


def test_kernel_forms_of_the_usid_behaviours() -> None:
    st = _state("os-n1")
    routes, skipped = reconcile.srv6_routes(st, vrf=True, encap_device="up0", kernel=True)
    assert skipped == []
    sid = next(r for r in routes if r.kind == "sid")
    assert (str(sid.dst), sid.encap) == ("fcbb:bb00:3::/48",
                                         Seg6Local("End.DT46", vrf_table=254))
    assert reconcile._KERNEL_USID[reconcile.Behavior.UN] == Seg6Local("End", next_csid=16)
    assert reconcile._KERNEL_USID[reconcile.Behavior.UDT4] == Seg6Local(
        "End.DX4", nh4=IPv4Address(0))


def caps(kernel: bool, csid: bool, vrf: bool = False) -> Capabilities:
    checks = [Check(n, kernel) for n in KERNEL_NEEDS]
    checks += [Check(n, True) for n in BPF_NEEDS]
    checks += [Check("seg6local.End.next-csid", csid, "" if csid else "Invalid argument"),
               Check("seg6local.End.X.next-csid", csid, "" if csid else "Invalid argument"),
               Check("vrf", vrf, "" if vrf else "Operation not supported (errno 95)"),
               Check("seg6local.End.DT46", vrf, "" if vrf else "Invalid argument (errno 22)")]
    return Capabilities(tuple(checks), "6.18.44")


def test_auto_takes_the_kernel_for_un_only_where_next_csid_works() -> None:
    assert kernel_needs(["uN", "uDT46", "End"]) == (
        *KERNEL_NEEDS, "seg6local.End.DT46", "vrf", "seg6local.End.next-csid")
    assert choose_datapath("auto", caps(True, True), ["uN"]) == "kernel"
    assert choose_datapath("auto", caps(True, False), ["uN"]) == "bpf"
    assert why_not_kernel(caps(True, False), ["uN"]) == \
        "seg6local.End.next-csid: Invalid argument"
    # full SIDs are not held back by a kernel without NEXT-C-SID
    assert choose_datapath("auto", caps(True, False), ["End", "End.DX4"]) == "kernel"
    with pytest.raises(DatapathUnavailable, match=r"seg6local\.End\.next-csid: Invalid argument"):
        choose_datapath("kernel", caps(True, False), ["uN"])


def test_a_nodes_udt46_needs_vrf_on_the_kernel_else_auto_takes_ebpf() -> None:
    assert choose_datapath("auto", caps(True, True, vrf=False), ["uDT46"]) == "bpf"
    assert choose_datapath("auto", caps(True, True, vrf=True), ["uDT46"]) == "kernel"
    assert needed_missing(caps(True, True), "kernel", ["uDT46"]) == (
        "seg6local.End.DT46: Invalid argument (errno 22)",
        "vrf: Operation not supported (errno 95)")
    assert needed_missing(caps(True, True), "bpf", ["uDT46"]) == ()


def test_doctor_says_where_un_runs_and_why() -> None:
    text = render_text(caps(True, False))
    assert "srv6.datapath auto -> kernel" in text
    assert ("srv6.datapath auto for uSID routers (uN) -> bpf (not the kernel: "
            "seg6local.End.next-csid: Invalid argument)") in text
