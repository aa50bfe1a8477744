"""uSIDs (RFC 9800 NEXT-C-SID, F3216) on both datapaths, between the test's own namespaces:

    pod A --pa0-- node A --up0/l0-- w1 --r1/l1-- w2 --r2/l2-- w3 --r3/up0-- node B --pb0-- pod B

w1, w2 and w3 run a uN each (w2 also a uA toward w3): once on the eBPF datapath (flr_sid), once
on the kernel's (End / End.X with the NEXT-C-SID flavour, written by the speaker's own netlink
codec), where the probe finds it. The nodes encapsulate and decapsulate (uDT46) on eBPF.
Captures at the ingress of every hop are decoded field by field: the destination address loses
one uSID per hop, and there is no SRH while the path fits one container; both datapaths must
put the same bytes on the wire.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Address, IPv6Network

import pytest

from speaker.bpf import build
from speaker.bpf.datapath import PROG_ENCAP, PROG_SID, BpfDatapath
from speaker.bpf.maps import EncapEntry, LocatorEntry, UsidEntry
from speaker.capabilities import kernel_needs
from tests.netns.bpf.conftest import add_pod, bpffs_mount, no_rp_filter, node_sysctls
from tests.netns.bpf.test_bpf_datapath import Frame, Outer, capture, len_inner, parse_outer
from tests.netns_util import Netns, need_kernel, need_root, need_tool, sh, unique

pytestmark = pytest.mark.root

POD_A4, POD_B4 = "10.0.1.2", "10.0.2.2"
POD_A6, POD_B6 = "fd00:1::2", "fd00:2::2"
NET_B4, NET_B6 = IPv4Network("10.0.2.0/24"), IPv6Network("fd00:2::/64")
NET_A4, NET_A6 = IPv4Network("10.0.1.0/24"), IPv6Network("fd00:1::/64")
ID = {"A": 0xA, "w1": 1, "w2": 2, "w3": 3, "B": 0xB}
UA_W2 = IPv6Network("fcbb:bb00:2:e001::/64")   # w2's uA toward w3 (a local function)
#: the validator's pod MTU for a one-container uSID path over a 1500-byte underlay
POD_MTU = 1500 - 40


def loc(name: str) -> IPv6Network:
    return IPv6Network(f"fcbb:bb00:{ID[name]:x}::/48")


def container(*groups: int) -> IPv6Address:
    words = ["fcbb", "bb00", *(f"{g:x}" for g in groups)]
    return IPv6Address(":".join(words) + ("::" if len(words) < 8 else ""))


@dataclass
class Chain:
    nets: Netns
    routers: str = "bpf"  # the routers' datapath: bpf or kernel
    ns: dict[str, str] = field(default_factory=dict)
    dp: dict[str, BpfDatapath] = field(default_factory=dict)
    #: each hop's ingress interface toward pod B (where its captures are taken)
    ingress: dict[str, str] = field(default_factory=dict)

    def ping(self, src: str, dst: str, *args: str, count: int = 3, check: bool = True
             ) -> str:
        fam = "-6" if ":" in dst else "-4"
        res = sh("ping", fam, "-n", "-c", str(count), "-i", "0.2", "-W", "2", *args, dst,
                 ns=self.ns[src], check=False, timeout=30)
        if check:
            assert res.returncode == 0, f"ping {dst} from {src} failed:\n{res.stdout}"
        return res.stdout if res.returncode == 0 else "FAILED\n" + res.stdout

    def route_to_b(self, *segments: IPv6Address) -> None:
        src = loc("A").network_address
        ents = [EncapEntry(NET_B4, "encap.red", segments, src),
                EncapEntry(NET_B6, "encap.red", segments, src)]
        assert self.dp["A"].apply(put=ents) == []


ORDER = ("A", "w1", "w2", "w3", "B")


def _underlay(c: Chain) -> None:
    """Link i joins ORDER[i] and ORDER[i+1] (2001:db8:i::1 and ::2); static routes to every
    /48, left or right."""
    ifs = {("A", "right"): "up0", ("B", "left"): "up0"}
    for i in range(4):
        left, right = ORDER[i], ORDER[i + 1]
        lif = ifs.get((left, "right"), f"r{i + 1}")
        rif = ifs.get((right, "left"), f"l{i}")
        c.nets.veth(c.ns[left], lif, c.ns[right], rif)
        ifs[(left, "right")], ifs[(right, "left")] = lif, rif
        sh("ip", "-6", "addr", "add", f"2001:db8:{i}::1/64", "dev", lif, "nodad", ns=c.ns[left])
        sh("ip", "-6", "addr", "add", f"2001:db8:{i}::2/64", "dev", rif, "nodad",
           ns=c.ns[right])
        c.ingress[right] = rif
    for pos, me in enumerate(ORDER):
        for other_pos, other in enumerate(ORDER):
            if other_pos > pos:
                via = f"2001:db8:{pos}::2"
            elif other_pos < pos:
                via = f"2001:db8:{pos - 1}::1"
            else:
                continue
            sh("ip", "-6", "route", "add", str(loc(other)), "via", via, ns=c.ns[me])
    # w2 has no route of its own to B: only its uA (to w3) gets a packet for B through
    sh("ip", "-6", "route", "replace", "unreachable", str(loc("B")), ns=c.ns["w2"])


#: run in a router's namespace: write a NEXT-C-SID SID with the speaker's codec, read it back
_KERNEL_SID = """
import sys
from ipaddress import IPv6Address, ip_network
from speaker.routes import Nexthop, Route, Seg6Local
from speaker.rtnl import Op, Rtnl
prefix, action, bits = ip_network(sys.argv[1]), sys.argv[2], int(sys.argv[3])
nh6 = IPv6Address(sys.argv[4]) if len(sys.argv) > 4 else None
r = Route(prefix, (Nexthop(None, "flrsid"),), Seg6Local(action, nh6=nh6, next_csid=bits),
          metric=1024)
with Rtnl(70) as rtnl:
    assert rtnl.apply([Op("add", r)]) == [], "the kernel refused " + str(r)
    got = [x.encap for x in rtnl.dump() if x.dst == prefix]
    assert got == [r.encap], got
"""


def _kernel_routers(c: Chain) -> None:
    for name in ("w1", "w2", "w3"):
        ns = c.ns[name]
        sh("ip", "link", "add", "flrsid", "type", "veth", "peer", "name", "flrsid0", ns=ns)
        sh("ip", "link", "set", "flrsid", "up", ns=ns)
        sh("sysctl", "-qw", "net.ipv6.conf.all.seg6_enabled=1", ns=ns)
        sh("python3", "-c", _KERNEL_SID, str(loc(name)), "End", "16", ns=ns)
    sh("python3", "-c", _KERNEL_SID, str(UA_W2), "End.X", "32", "2001:db8:2::2",
       ns=c.ns["w2"])
    shown = sh("ip", "-6", "route", "show", str(loc("w1")), ns=c.ns["w1"]).stdout
    assert "action End flavors next-csid lblen 32 nflen 16" in shown, shown


def _datapaths(c: Chain, bpffs: str) -> None:
    base = os.path.join(bpffs, unique("usid"))
    bpf_routers = ("w1", "w2", "w3") if c.routers == "bpf" else ()
    for name in ("A", *bpf_routers, "B"):
        c.dp[name] = BpfDatapath(os.path.join(base, name), netns=c.ns[name])
        c.dp[name].load()
    if c.routers == "kernel":
        _kernel_routers(c)
    for name in bpf_routers:
        for dev in sh("ls", "/sys/class/net", ns=c.ns[name]).stdout.split():
            if dev != "lo":
                c.dp[name].attach(dev, PROG_SID)
        entries: list[UsidEntry | LocatorEntry] = [UsidEntry(loc(name), "uN"),
                                                   LocatorEntry(loc(name))]
        if name == "w2":
            entries.append(UsidEntry(UA_W2, "uA", IPv6Address("2001:db8:2::2")))
        assert c.dp[name].apply(put=entries) == []
    for node, pod_if in (("A", "pa0"), ("B", "pb0")):
        c.dp[node].attach(pod_if, PROG_ENCAP)
        c.dp[node].attach("up0", PROG_SID)
        assert c.dp[node].apply(put=[UsidEntry(loc(node), "uDT46"),
                                     LocatorEntry(loc(node))]) == []
    back = (container(ID["A"]),)
    src = loc("B").network_address
    assert c.dp["B"].apply(put=[EncapEntry(NET_A4, "encap.red", back, src),
                                EncapEntry(NET_A6, "encap.red", back, src)]) == []


@pytest.fixture(scope="module", params=["bpf", "kernel"])
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    need_root()
    need_tool("ip", "tc", "ping", "tcpdump", "clang", "bpftool")
    if request.param == "kernel":
        need_kernel(kernel_needs(("uN", "uA")), "kernel uN/uA (NEXT-C-SID End, End.X)",
                    request.node.nodeid)
    build.build()
    nets = Netns()
    try:
        with bpffs_mount() as fs:
            c = Chain(nets, request.param)
            try:
                for name in ORDER:
                    c.ns[name] = nets.add(name.lower())
                c.ns["pod A"], c.ns["pod B"] = nets.add("pa"), nets.add("pb")
                for name in ORDER:
                    node_sysctls(c.ns[name])
                _underlay(c)
                _pod_pair(c)
                for name in ORDER:
                    no_rp_filter(c.ns[name])
                _datapaths(c, fs)
                yield c
            finally:
                for dp in c.dp.values():
                    with contextlib.suppress(Exception):
                        dp.remove()
                nets.close()
    finally:
        nets.close()


def _pod_pair(c: Chain) -> None:
    add_pod(c.nets, c.ns["pod A"], c.ns["A"], "pa0", POD_A4, POD_A6)
    add_pod(c.nets, c.ns["pod B"], c.ns["B"], "pb0", POD_B4, POD_B6)


@contextlib.contextmanager
def captures(c: Chain) -> Iterator[dict[str, list[Outer]]]:
    """The encapsulated packets from node A arriving at each hop, decoded."""
    raw: dict[str, list[Frame]] = {}
    out: dict[str, list[Outer]] = {}
    with contextlib.ExitStack() as stack:
        for hop in ("w1", "w2", "w3", "B"):
            raw[hop] = stack.enter_context(capture(c.ns[hop], c.ingress[hop]))
        yield out
    src = loc("A").network_address
    for hop, frames in raw.items():
        out[hop] = [o for o in map(parse_outer, frames)
                    if o is not None and o.src == src]


def counters(c: Chain) -> dict[str, dict[str, int]]:
    return {k: dp.counters() for k, dp in c.dp.items()}


@pytest.mark.parametrize("fam", ["v4", "v6"])
def test_one_container_shifts_one_usid_per_hop_without_an_srh(chain: Chain, fam: str) -> None:
    first = container(ID["w1"], ID["w2"], ID["w3"], ID["B"])
    chain.route_to_b(first)
    dst, back = (POD_B4, POD_A4) if fam == "v4" else (POD_B6, POD_A6)
    before = counters(chain)
    with captures(chain) as seen:
        chain.ping("pod A", dst)
    chain.ping("pod B", back)  # B's uDT46-bound way back, one uSID
    after = counters(chain)
    expect = {"w1": (container(1, 2, 3, 0xB), 63), "w2": (container(2, 3, 0xB), 62),
              "w3": (container(3, 0xB), 61), "B": (container(0xB), 60)}
    inner_nh = 4 if fam == "v4" else 41
    for hop, (da, hlim) in expect.items():
        assert len(seen[hop]) >= 3, (hop, seen[hop])
        for o in seen[hop]:
            assert o.dst == da, (hop, o.dst)
            assert o.hop_limit == hlim, (hop, o.hop_limit)
            assert o.srh is None and o.next_header == inner_nh, hop
            assert o.payload_len == len_inner(o), "40 bytes of encapsulation, nothing more"
            assert o.wire_len == 14 + 40 + len_inner(o)
    for hop in ("w1", "w2", "w3") if chain.routers == "bpf" else ():
        assert after[hop]["usid_shift"] - before[hop]["usid_shift"] >= 3, hop
    assert after["B"]["decap"] - before["B"]["decap"] >= 3
    assert after["A"]["decap"] - before["A"]["decap"] >= 6


def test_two_containers_take_an_srh_and_the_next_segment_at_the_end(chain: Chain) -> None:
    c1, c2 = container(ID["w1"], ID["w2"]), container(ID["w3"], ID["B"])
    chain.route_to_b(c1, c2)
    before = counters(chain)
    with captures(chain) as seen:
        chain.ping("pod A", POD_B4)
    after = counters(chain)
    expect = {"w1": (container(1, 2), 1), "w2": (container(2), 1),
              "w3": (container(3, 0xB), 0), "B": (container(0xB), 0)}
    for hop, (da, sl) in expect.items():
        assert len(seen[hop]) >= 3, (hop, seen[hop])
        for o in seen[hop]:
            assert o.dst == da, (hop, o.dst)
            assert o.next_header == 43 and o.srh is not None
            # H.Encaps.Red: the first container is in the destination address only
            assert o.srh["segments"] == [c2] and o.srh["last_entry"] == 0
            assert o.srh["sl"] == sl and o.srh["hdr_ext_len"] == 2, hop
            assert o.srh["next_header"] == 4
            assert o.payload_len == 8 + 16 + len_inner(o)
    if chain.routers == "bpf":
        assert after["w2"]["end"] - before["w2"]["end"] >= 3  # end of container 1: SL 1 -> 0
    assert after["B"]["decap"] - before["B"]["decap"] >= 3


def test_ua_forwards_to_its_neighbour_whatever_the_routing_table_says(chain: Chain) -> None:
    # w2 has `unreachable` for B's /48: only the uA's neighbour (w3) gets the packet there
    chain.route_to_b(container(ID["w1"], 2, 0xE001, ID["B"]))
    before = counters(chain)
    with captures(chain) as seen:
        chain.ping("pod A", POD_B6)
    after = counters(chain)
    assert {o.dst for o in seen["w2"]} == {container(2, 0xE001, 0xB)}
    assert {(o.dst, o.hop_limit) for o in seen["w3"]} == {(container(0xB), 61)}
    if chain.routers == "bpf":
        assert after["w2"]["usid_shift"] - before["w2"]["usid_shift"] >= 3
    assert after["B"]["decap"] - before["B"]["decap"] >= 3


def test_a_container_ending_at_a_un_is_dropped_and_counted(chain: Chain) -> None:
    chain.route_to_b(container(ID["w1"], ID["w2"]))  # no egress: nothing after w2
    with captures(chain) as seen:
        out = chain.ping("pod A", POD_B4, count=2, check=False)
    assert out.startswith("FAILED")
    assert len(seen["w2"]) >= 2 and seen["w3"] == []  # w2 got them and sent nothing on
    if chain.routers == "bpf":
        assert counters(chain)["w2"]["usid_end"] >= 2


def test_full_size_df_packets_at_the_validators_pod_mtu_cross(chain: Chain) -> None:
    chain.route_to_b(container(ID["w1"], ID["w2"], ID["w3"], ID["B"]))
    # one byte more than the validator's pod MTU does not fit: node A tells the pod the MTU
    # that does
    too_big = chain.ping("pod A", POD_B4, "-M", "do", "-s", str(POD_MTU + 1 - 28), count=1,
                         check=False)
    assert f"mtu = {POD_MTU}" in too_big, too_big
    pods = (("pod A", "A", "pa0"), ("pod B", "B", "pb0"))
    try:
        for pod, node, hostif in pods:
            sh("ip", "link", "set", "eth0", "mtu", str(POD_MTU), ns=chain.ns[pod])
            sh("ip", "link", "set", hostif, "mtu", str(POD_MTU), ns=chain.ns[node])
        with captures(chain) as seen:
            chain.ping("pod A", POD_B4, "-M", "do", "-s", str(POD_MTU - 28), count=2)
            chain.ping("pod A", POD_B6, "-M", "do", "-s", str(POD_MTU - 48), count=2)
        for hop in ("w1", "w2", "w3", "B"):
            assert max(o.wire_len for o in seen[hop]) == 14 + 1500, hop  # the underlay's MTU
    finally:
        for pod, node, hostif in pods:
            sh("ip", "link", "set", "eth0", "mtu", "1500", ns=chain.ns[pod])
            sh("ip", "link", "set", hostif, "mtu", "1500", ns=chain.ns[node])
