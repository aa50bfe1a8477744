"""A routed SRv6 lab for the eBPF datapath, made of the test's own namespaces:

    pod A --eth0/pa0-- node A --up0/ta0-- transit --tb0/up0-- node B --pb0/eth0-- pod B

The underlay is IPv6 only (static routes to each locator). Pods have /32 and /128 addresses
with link-local gateways (169.254.1.1 by a permanent neighbour, fe80::1 on the host veth).
Every node runs its own BpfDatapath (own pin directory) in one bpffs mounted for this module at a
unique directory of the host's mount namespace (`ip netns exec` would hide /sys/fs/bpf).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Address, IPv6Network

import pytest

from speaker.bpf import build
from speaker.bpf.datapath import PROG_ENCAP, PROG_SID, BpfDatapath
from speaker.bpf.maps import EncapEntry, LocatorEntry, SidEntry
from tests.netns_util import Netns, need_root, need_tool, sh, unique

POD_A4, POD_B4 = "10.0.1.2", "10.0.2.2"
POD_A6, POD_B6 = "fd00:1::2", "fd00:2::2"
NET_A4, NET_B4 = IPv4Network("10.0.1.0/24"), IPv4Network("10.0.2.0/24")
NET_A6, NET_B6 = IPv6Network("fd00:1::/64"), IPv6Network("fd00:2::/64")
LOC_A, LOC_T, LOC_B = (IPv6Network("fc00:a::/48"), IPv6Network("fc00:f::/48"),
                       IPv6Network("fc00:b::/48"))
SRC_A, SRC_B = IPv6Address("fc00:a::1"), IPv6Address("fc00:b::1")
SIDS = {
    "A:dt46": IPv6Address("fc00:a::46"),
    "T:end": IPv6Address("fc00:f::e"),
    "B:dx4": IPv6Address("fc00:b::d4"),
    "B:dt4": IPv6Address("fc00:b::e4"),
    "B:dt6": IPv6Address("fc00:b::d6"),
    "B:dx6": IPv6Address("fc00:b::e6"),
    "B:dt46": IPv6Address("fc00:b::46"),
}
MTU = 1500


@contextlib.contextmanager
def bpffs_mount() -> Iterator[str]:
    """A bpffs of our own at a unique directory; unmounted and removed at the end."""
    path = f"/run/flatroute-test-{unique('')}"
    os.makedirs(path)
    try:
        sh("mount", "-t", "bpf", "bpf", path)
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", path], capture_output=True, check=False)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def sysctls(ns: str, *settings: str) -> None:
    for s in settings:
        sh("sysctl", "-qw", s, ns=ns)


def node_sysctls(ns: str) -> None:
    sysctls(ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
            "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")


def no_rp_filter(ns: str) -> None:
    for dev in sh("ls", "/sys/class/net", ns=ns).stdout.split():
        sh("sysctl", "-qw", f"net.ipv4.conf.{dev}.rp_filter=0", ns=ns, check=False)


def mac(ns: str, dev: str) -> str:
    return sh("cat", f"/sys/class/net/{dev}/address", ns=ns).stdout.strip()


@dataclass
class Lab:
    nets: Netns
    bpffs: str
    pod_a: str = ""
    node_a: str = ""
    transit: str = ""
    node_b: str = ""
    pod_b: str = ""
    dp: dict[str, BpfDatapath] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)

    def ping(self, src_ns: str, dst: str, *args: str, count: int = 3,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        fam = "-6" if ":" in dst else "-4"
        res = sh("ping", fam, "-n", "-c", str(count), "-i", "0.2", "-W", "2", *args, dst,
                 ns=src_ns, check=False, timeout=30)
        if check:
            assert res.returncode == 0, f"ping {dst} from {src_ns} failed:\n{res.stdout}"
        return res


def add_pod(nets: Netns, pod: str, node: str, hostif: str, v4: str, v6: str) -> None:
    nets.veth(pod, "eth0", node, hostif)
    sysctls(pod, "net.ipv4.conf.all.rp_filter=0", "net.ipv6.conf.all.accept_dad=0")
    sh("ip", "addr", "add", f"{v4}/32", "dev", "eth0", ns=pod)
    sh("ip", "-6", "addr", "add", f"{v6}/128", "dev", "eth0", "nodad", ns=pod)
    sh("ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link", ns=pod)
    sh("ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0", ns=pod)
    sh("ip", "neigh", "replace", "169.254.1.1", "lladdr", mac(node, hostif), "dev", "eth0",
       "nud", "permanent", ns=pod)
    sh("ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0", ns=pod)
    sh("ip", "-6", "addr", "add", "fe80::1/64", "dev", hostif, "nodad", ns=node)
    sh("ip", "route", "add", f"{v4}/32", "dev", hostif, ns=node)
    sh("ip", "-6", "route", "add", f"{v6}/128", "dev", hostif, ns=node)


def build_lab(lab: Lab) -> None:
    nets = lab.nets
    lab.pod_a, lab.node_a = nets.add("poda"), nets.add("nda")
    lab.transit = nets.add("trn")
    lab.node_b, lab.pod_b = nets.add("ndb"), nets.add("podb")
    for n in (lab.node_a, lab.transit, lab.node_b):
        node_sysctls(n)
    nets.veth(lab.node_a, "up0", lab.transit, "ta0")
    nets.veth(lab.transit, "tb0", lab.node_b, "up0")
    add_pod(nets, lab.pod_a, lab.node_a, "pa0", POD_A4, POD_A6)
    add_pod(nets, lab.pod_b, lab.node_b, "pb0", POD_B4, POD_B6)
    sh("ip", "addr", "add", "192.168.255.1/32", "dev", "lo", ns=lab.node_a)
    sh("ip", "addr", "add", "192.168.255.2/32", "dev", "lo", ns=lab.node_b)
    sh("ip", "-6", "addr", "add", "2001:db8:a::1/64", "dev", "up0", "nodad", ns=lab.node_a)
    sh("ip", "-6", "addr", "add", "2001:db8:a::2/64", "dev", "ta0", "nodad", ns=lab.transit)
    sh("ip", "-6", "addr", "add", "2001:db8:b::2/64", "dev", "tb0", "nodad", ns=lab.transit)
    sh("ip", "-6", "addr", "add", "2001:db8:b::1/64", "dev", "up0", "nodad", ns=lab.node_b)
    for loc in (LOC_B, LOC_T):
        sh("ip", "-6", "route", "add", str(loc), "via", "2001:db8:a::2", ns=lab.node_a)
    for loc in (LOC_A, LOC_T):
        sh("ip", "-6", "route", "add", str(loc), "via", "2001:db8:b::2", ns=lab.node_b)
    sh("ip", "-6", "route", "add", str(LOC_A), "via", "2001:db8:a::1", ns=lab.transit)
    sh("ip", "-6", "route", "add", str(LOC_B), "via", "2001:db8:b::1", ns=lab.transit)
    for n in (lab.node_a, lab.transit, lab.node_b):
        no_rp_filter(n)

    base = os.path.join(lab.bpffs, unique("lab"))
    for key, ns in (("A", lab.node_a), ("T", lab.transit), ("B", lab.node_b)):
        lab.pins[key] = os.path.join(base, key)
        lab.dp[key] = BpfDatapath(lab.pins[key], netns=ns)
        lab.dp[key].load()
    a, t, b = lab.dp["A"], lab.dp["T"], lab.dp["B"]
    a.attach("pa0", PROG_ENCAP)
    a.attach("up0", PROG_SID)
    t.attach("ta0", PROG_SID)
    t.attach("tb0", PROG_SID)
    b.attach("pb0", PROG_ENCAP)
    b.attach("up0", PROG_SID)
    behaviors = {"dt46": "End.DT46", "end": "End", "dx4": "End.DX4", "dt4": "End.DT4",
                 "dt6": "End.DT6", "dx6": "End.DX6"}
    for key, dp, loc in (("A", a, LOC_A), ("T", t, LOC_T), ("B", b, LOC_B)):
        sids = [SidEntry(sid, behaviors[name.split(":")[1]]) for name, sid in SIDS.items()
                if name.startswith(key + ":")]
        assert dp.apply(put=[*sids, LocatorEntry(loc)]) == []
    # the way back: B encapsulates towards A's End.DT46
    back = [EncapEntry(NET_A4, "encap", (SIDS["A:dt46"],), SRC_B),
            EncapEntry(NET_A6, "encap", (SIDS["A:dt46"],), SRC_B)]
    assert b.apply(put=back) == []


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    need_root()
    need_tool("ip", "tc", "ping", "tcpdump", "clang", "bpftool")
    build.build()
    nets = Netns()
    try:
        with bpffs_mount() as fs:
            lab = Lab(nets=nets, bpffs=fs)
            try:
                build_lab(lab)
                yield lab
            finally:
                for dp in lab.dp.values():
                    with contextlib.suppress(Exception):
                        dp.remove()
                nets.close()
    finally:
        nets.close()


@pytest.fixture
def bpffs() -> Iterator[str]:
    need_root()
    with bpffs_mount() as fs:
        yield fs
