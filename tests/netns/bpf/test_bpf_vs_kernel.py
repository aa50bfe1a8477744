"""The eBPF datapath against the kernel's seg6 on the same topology: the same inner packets,
encapsulated once by `encap seg6` routes and once by flr_encap, decoded field by field from
captures on the transit link, must be the same bytes (all but the flow label's value, a hash
on both); and each decapsulates the other's packets. Also the smallest packets, which are
below an IPv6 header's size: they must be encapsulated like any other."""

from __future__ import annotations

import sys
from ipaddress import IPv6Address

import pytest

from speaker.bpf.maps import EncapEntry
from tests.netns.bpf.conftest import (
    NET_B4,
    NET_B6,
    POD_A4,
    POD_B4,
    POD_B6,
    SIDS,
    SRC_A,
    Lab,
)
from tests.netns.bpf.test_bpf_datapath import Outer, capture, inner_ttl, parse_outer
from tests.netns_util import need_kernel_srv6, sh

pytestmark = pytest.mark.root
#: a traffic class and a hop limit of their own, so that how each is carried over is compared
PING = ("-s", "56", "-t", "10", "-Q", "0x20")


def _outers(frames: list[object]) -> list[Outer]:
    return [o for o in map(parse_outer, frames) if o is not None  # type: ignore[arg-type]
            and o.src == SRC_A]


FIELDS = ("traffic class", "flow label set", "payload length", "next header", "hop limit",
          "source", "destination", "SRH", "inner protocol", "inner TTL", "inner length")


def _shape(o: Outer) -> tuple[object, ...]:
    """Every field both datapaths must agree on (the flow label only as 'set')."""
    srh = None if o.srh is None else tuple(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(o.srh.items()))
    return (o.traffic_class, o.flow_label != 0, o.payload_len, o.next_header, o.hop_limit,
            o.src, o.dst, srh, o.inner_proto, inner_ttl(o), len(o.inner))


def test_the_smallest_packets_are_encapsulated_too(lab: Lab) -> None:
    """A 36-byte IPv4 echo request (raw socket, 8 bytes of payload) is shorter than an IPv6
    header: the encapsulation must not mistake it for a non-IP frame and let it out bare."""
    entry = EncapEntry(NET_B4, "encap", (SIDS["B:dx4"],), SRC_A)
    assert lab.dp["A"].apply(put=[entry]) == []
    with capture(lab.transit, "ta0") as frames:
        out = sh(sys.executable, "-m", "lab.probe", "--tries", "3", POD_B4,
                 ns=lab.pod_a).stdout
    assert '"10.0.2.2": null' not in out, out
    outers = _outers(frames)
    assert outers and all(o.inner_proto == 4 and len(o.inner) >= 36 for o in outers), outers


@pytest.mark.parametrize(("fam", "mode", "sids"), [
    ("v4", "encap", ("B:dx4",)), ("v6", "encap", ("B:dt6",)),
    ("v4", "encap", ("T:end", "B:dx4")), ("v4", "encap.red", ("B:dx4",)),
    ("v6", "encap.red", ("T:end", "B:dt6"))])
def test_kernel_seg6_and_ebpf_put_the_same_bytes_on_the_wire(
        lab: Lab, fam: str, mode: str, sids: tuple[str, ...]) -> None:
    need_kernel_srv6()
    segs = tuple(SIDS[s] for s in sids)
    net, dst = (NET_B4, POD_B4) if fam == "v4" else (NET_B6, POD_B6)
    entry = EncapEntry(net, mode, segs, SRC_A)
    a = lab.dp["A"]
    # eBPF first
    assert a.apply(put=[entry]) == []
    with capture(lab.transit, "ta0") as frames:
        lab.ping(lab.pod_a, dst, *PING)
    ebpf = _outers(frames)
    # then the kernel: the same prefix as a seg6 route, the eBPF entry gone
    assert a.apply(delete=[entry]) == []
    fam_flag = "-4" if fam == "v4" else "-6"
    sh("ip", "sr", "tunsrc", "set", str(SRC_A), ns=lab.node_a)
    sh("sysctl", "-qw", "net.ipv6.seg6_flowlabel=1", ns=lab.node_a)
    sh("ip", fam_flag, "route", "add", str(net), "encap", "seg6", "mode", mode, "segs",
       ",".join(str(s) for s in segs), "dev", "up0", ns=lab.node_a)
    try:
        with capture(lab.transit, "ta0") as frames:
            lab.ping(lab.pod_a, dst, *PING)  # and node B's eBPF decapsulates it
        kernel = _outers(frames)
    finally:
        sh("ip", fam_flag, "route", "del", str(net), ns=lab.node_a, check=False)
    assert ebpf and kernel
    want, got = {_shape(o) for o in kernel}, {_shape(o) for o in ebpf}
    assert got == want, [(n, a, b) for n, a, b in zip(FIELDS, sorted(got)[0], sorted(want)[0],
                                                     strict=True) if a != b]
    assert all(o.dst == IPv6Address(segs[0]) for o in ebpf + kernel)


def test_ebpf_decapsulates_for_a_kernel_seg6local_node_and_back(lab: Lab) -> None:
    """Node B's SID as a kernel seg6local End.DX4 instead of flr_sid: node A's eBPF
    encapsulation reaches it, and the way back (eBPF at B) reaches A's eBPF End.DT46."""
    need_kernel_srv6()
    sid = IPv6Address(int(SIDS["B:dx4"]) + 0x100)  # a SID of B's locator the map lacks
    sh("ip", "link", "add", "ftsid", "type", "veth", "peer", "name", "ftsid0",
       ns=lab.node_b, check=False)
    sh("ip", "link", "set", "ftsid", "up", ns=lab.node_b)
    sh("ip", "link", "set", "ftsid0", "up", ns=lab.node_b)
    sh("ip", "-6", "route", "add", f"{sid}/128", "encap", "seg6local", "action", "End.DX4",
       "nh4", "0.0.0.0", "dev", "ftsid", ns=lab.node_b)
    b = lab.dp["B"]
    detached = "up0" in b.attached()
    b.detach("up0")  # node B runs the kernel datapath now
    entry = EncapEntry(NET_B4, "encap", (sid,), SRC_A)
    try:
        assert lab.dp["A"].apply(put=[entry]) == []
        lab.ping(lab.pod_a, POD_B4)
        lab.ping(lab.pod_b, POD_A4)
    finally:
        if detached:
            b.attach("up0", "flr_sid")
        sh("ip", "-6", "route", "del", f"{sid}/128", ns=lab.node_b, check=False)
        sh("ip", "link", "del", "ftsid", ns=lab.node_b, check=False)
