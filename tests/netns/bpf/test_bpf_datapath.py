"""The eBPF SRv6 datapath (speaker/bpf) on real traffic between the test's own namespaces.

Encapsulated packets are captured on the transit link (tcpdump -w) and decoded here, field by
field, with a tiny stdlib pcap + IPv6 + SRH parser.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from speaker.bpf import build
from speaker.bpf.datapath import PROG_ENCAP, PROG_SID, BpfDatapath
from speaker.bpf.maps import EncapEntry
from tests.netns.bpf.conftest import (
    NET_B4,
    NET_B6,
    POD_A4,
    POD_A6,
    POD_B4,
    POD_B6,
    SIDS,
    SRC_A,
    Lab,
)
from tests.netns_util import Netns, need_root, need_tool, sh, unique

pytestmark = pytest.mark.root


# --- a tiny pcap / IPv6 / SRH decoder ----------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    wire_len: int
    data: bytes


@dataclass(frozen=True)
class Outer:
    wire_len: int
    traffic_class: int
    flow_label: int
    payload_len: int
    next_header: int
    hop_limit: int
    src: IPv6Address
    dst: IPv6Address
    srh: dict[str, object] | None
    inner_proto: int           # 4 or 41
    inner: bytes


def read_pcap(path: str) -> list[Frame]:
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 24:
        return []
    magic = struct.unpack("<I", raw[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(end + "I", raw[20:24])[0]
    assert linktype == 1, f"expected Ethernet captures, got link type {linktype}"
    frames, off = [], 24
    while off + 16 <= len(raw):
        _, _, incl, orig = struct.unpack(end + "IIII", raw[off:off + 16])
        frames.append(Frame(orig, raw[off + 16:off + 16 + incl]))
        off += 16 + incl
    return frames


def parse_outer(frame: Frame) -> Outer | None:
    d = frame.data
    if len(d) < 54 or d[12:14] != b"\x86\xdd":
        return None
    ip = d[14:54]
    vtcfl, plen, nh, hlim = struct.unpack("!IHBB", ip[:8])
    assert vtcfl >> 28 == 6
    srh: dict[str, object] | None = None
    rest = d[54:]
    inner_proto = nh
    if nh == 43:
        snh, hdrlen, rtype, sl, last, flags, tag = struct.unpack("!BBBBBBH", rest[:8])
        n = hdrlen * 8 // 16
        segs = [IPv6Address(rest[8 + 16 * i:24 + 16 * i]) for i in range(n)]
        srh = {"next_header": snh, "hdr_ext_len": hdrlen, "type": rtype, "sl": sl,
               "last_entry": last, "flags": flags, "tag": tag, "segments": segs}
        inner_proto = snh
        rest = rest[8 + hdrlen * 8:]
    return Outer(frame.wire_len, (vtcfl >> 20) & 0xFF, vtcfl & 0xFFFFF, plen, nh, hlim,
                 IPv6Address(ip[8:24]), IPv6Address(ip[24:40]), srh, inner_proto, rest)


def inner_ttl(o: Outer) -> int:
    return o.inner[8] if o.inner_proto == 4 else o.inner[7]


@contextlib.contextmanager
def capture(ns: str, dev: str, snaplen: int = 256) -> Iterator[list[Frame]]:
    """Frames arriving on dev (direction in) while the block runs."""
    fd, path = tempfile.mkstemp(prefix="flr-bpf-", suffix=".pcap")
    os.close(fd)
    frames: list[Frame] = []
    proc = subprocess.Popen(
        # -Z root: tcpdump writes the file after dropping to its own user otherwise;
        # --immediate-mode: nothing stays buffered when it is stopped
        ["ip", "netns", "exec", ns, "tcpdump", "-Z", "root", "--immediate-mode", "-n",
         "-i", dev, "-Q", "in", "-U", "-s", str(snaplen), "-w", path, "ip6"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening" in line, f"tcpdump did not start: {line}"
        yield frames
        time.sleep(0.3)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        frames.extend(read_pcap(path))
        os.unlink(path)


# --- scenarios ---------------------------------------------------------------------------------

SCENARIOS = [
    ("v4", "encap", ("B:dx4",)),
    ("v4", "encap", ("B:dt4",)),
    ("v4", "encap", ("B:dt46",)),
    ("v6", "encap", ("B:dt6",)),
    ("v6", "encap", ("B:dx6",)),
    ("v6", "encap", ("B:dt46",)),
    ("v4", "encap", ("T:end", "B:dt46")),
    ("v6", "encap", ("T:end", "B:dt6")),
    ("v4", "encap.red", ("B:dx4",)),
    ("v6", "encap.red", ("B:dt46",)),
    ("v4", "encap.red", ("T:end", "B:dt4")),
    ("v6", "encap.red", ("T:end", "B:dt46")),
]


def set_route_to_b(lab: Lab, fam: str, mode: str, sids: tuple[str, ...]) -> EncapEntry:
    entry = EncapEntry(NET_B4 if fam == "v4" else NET_B6, mode,
                       tuple(SIDS[s] for s in sids), SRC_A)
    assert lab.dp["A"].apply(put=[entry]) == []
    return entry


@pytest.mark.parametrize(("fam", "mode", "sids"), SCENARIOS,
                         ids=[f"{f}-{m}-{'+'.join(s)}" for f, m, s in SCENARIOS])
def test_encap_and_decap_on_the_wire(lab: Lab, fam: str, mode: str,
                                     sids: tuple[str, ...]) -> None:
    entry = set_route_to_b(lab, fam, mode, sids)
    dst, back = (POD_B4, POD_A4) if fam == "v4" else (POD_B6, POD_A6)
    before = {k: dp.counters() for k, dp in lab.dp.items()}
    with capture(lab.transit, "ta0") as frames:
        lab.ping(lab.pod_a, dst)
    lab.ping(lab.pod_b, back)   # B encapsulates the way back to A's End.DT46
    after = {k: dp.counters() for k, dp in lab.dp.items()}

    outers = [o for o in map(parse_outer, frames) if o is not None and o.src == SRC_A]
    assert len(outers) >= 3, f"expected the 3 encapsulated echo requests, got {outers}"
    segs = list(entry.segments)
    n = len(segs)
    inner_nh = 4 if fam == "v4" else 41
    for o in outers:
        assert o.dst == segs[0]
        assert o.hop_limit == 63  # as the kernel: see test_bpf_vs_kernel.py
        assert o.flow_label != 0
        assert o.inner_proto == inner_nh
        assert inner_ttl(o) == 64, "the inner TTL is left alone, as the kernel does"
        if mode == "encap.red" and n == 1:
            assert o.srh is None
            assert o.next_header == inner_nh
            continue
        assert o.next_header == 43
        assert o.srh is not None
        listed = segs if mode == "encap" else segs[1:]
        assert o.srh["type"] == 4
        assert o.srh["next_header"] == inner_nh
        assert o.srh["hdr_ext_len"] == 2 * len(listed)
        assert o.srh["sl"] == n - 1
        assert o.srh["last_entry"] == len(listed) - 1
        assert o.srh["flags"] == 0 and o.srh["tag"] == 0
        assert o.srh["segments"] == list(reversed(listed))
        assert o.payload_len == 8 + 16 * len(listed) + len_inner(o)
    assert after["A"]["encap"] - before["A"]["encap"] >= 3
    assert after["B"]["decap"] - before["B"]["decap"] >= 3
    assert after["A"]["decap"] - before["A"]["decap"] >= 6  # replies and B's pings
    if "T:end" in sids:
        assert after["T"]["end"] - before["T"]["end"] >= 3


def len_inner(o: Outer) -> int:
    if o.inner_proto == 4:
        return int(struct.unpack("!H", o.inner[2:4])[0])
    return 40 + int(struct.unpack("!H", o.inner[4:6])[0])


def test_wrong_inner_family_for_the_sid_is_dropped(lab: Lab) -> None:
    set_route_to_b(lab, "v6", "encap", ("B:dx4",))
    before = lab.dp["B"].counters()["sl_mismatch"]
    res = lab.ping(lab.pod_a, POD_B6, count=2, check=False)
    assert res.returncode != 0
    assert lab.dp["B"].counters()["sl_mismatch"] - before >= 2


def test_unknown_sid_in_the_locator_is_dropped(lab: Lab) -> None:
    before = lab.dp["B"].counters()["no_sid"]
    res = lab.ping(lab.node_a, "fc00:b::dead", count=2, check=False)
    assert res.returncode != 0
    assert lab.dp["B"].counters()["no_sid"] - before >= 2


def test_too_big_answers_the_pod(lab: Lab) -> None:
    set_route_to_b(lab, "v4", "encap", ("B:dx4",))
    set_route_to_b(lab, "v6", "encap", ("B:dt6",))
    before = lab.dp["A"].counters()["too_big"]
    for ns, dev in ((lab.node_a, "up0"), (lab.transit, "ta0")):
        sh("ip", "link", "set", dev, "mtu", "1400", ns=ns)
    try:
        # 1400-byte packets + 64 bytes of encapsulation do not fit 1400: next-hop MTU 1336
        r4 = lab.ping(lab.pod_a, POD_B4, "-M", "do", "-s", "1372", count=2, check=False)
        assert r4.returncode != 0
        assert "mtu = 1336" in r4.stdout, r4.stdout
        r6 = lab.ping(lab.pod_a, POD_B6, "-M", "do", "-s", "1352", count=2, check=False)
        assert r6.returncode != 0
        assert "Packet too big" in r6.stdout and "mtu=1336" in r6.stdout, r6.stdout
        assert lab.dp["A"].counters()["too_big"] - before >= 2
        # what fits still goes through, at the MTU the pod was told
        lab.ping(lab.pod_a, POD_B4, "-M", "do", "-s", str(1336 - 28), count=2)
        lab.ping(lab.pod_a, POD_B6, "-M", "do", "-s", str(1336 - 48), count=2)
    finally:
        for ns, dev in ((lab.node_a, "up0"), (lab.transit, "ta0")):
            sh("ip", "link", "set", dev, "mtu", "1500", ns=ns)
        sh("ip", "route", "flush", "cache", ns=lab.pod_a, check=False)
        sh("ip", "-6", "route", "flush", "cache", ns=lab.pod_a, check=False)


def iperf(lab: Lab, dst: str, seconds: int = 3) -> dict[str, object]:
    server = subprocess.Popen(["ip", "netns", "exec", lab.pod_b, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while ":5201" not in sh("ss", "-Hltn", ns=lab.pod_b).stdout:
            assert server.poll() is None, "the iperf3 server exited"
            assert time.monotonic() < deadline, "the iperf3 server never listened"
            time.sleep(0.05)
        out = ""
        for _ in range(3):
            res = sh("iperf3", "-c", dst, "-t", str(seconds), "-J", ns=lab.pod_a, check=False,
                     timeout=seconds + 30)
            out = res.stdout
            if res.returncode == 0:
                break
            time.sleep(0.2)  # the server is not listening yet
        doc: dict[str, object] = json.loads(out)
        assert "error" not in doc, doc.get("error")
        return doc
    finally:
        server.kill()
        server.wait()


def check_throughput(doc: dict[str, object]) -> float:
    end = doc["end"]
    assert isinstance(end, dict)
    bps = float(end["sum_received"]["bits_per_second"])
    intervals = doc["intervals"]
    assert isinstance(intervals, list)
    rates = [float(i["sum"]["bits_per_second"]) for i in intervals]
    assert bps > 0
    assert all(r > 0 for r in rates), f"TCP stalled: {rates}"
    return bps


@pytest.mark.slow
@pytest.mark.parametrize(("fam", "mode", "sids"), [
    ("v4", "encap", ("B:dx4",)),
    ("v6", "encap", ("T:end", "B:dt6")),
    ("v4", "encap.red", ("B:dt46",)),
], ids=["v4-encap-dx4", "v6-encap-end-dt6", "v4-red-dt46"])
def test_tcp_with_tso(lab: Lab, fam: str, mode: str, sids: tuple[str, ...]) -> None:
    need_tool("iperf3")
    set_route_to_b(lab, fam, mode, sids)
    bps = check_throughput(iperf(lab, POD_B4 if fam == "v4" else POD_B6))
    print(f"iperf3 {fam} {mode} {'+'.join(sids)} TSO on: {bps / 1e9:.2f} Gbit/s")


@pytest.mark.slow
def test_tcp_segmented_in_software_fits_the_mtu(lab: Lab) -> None:
    """With offloads off on A's uplink the kernel segments our encapsulated GSO packets:
    every frame is within the MTU and carries its own outer header and SRH."""
    need_tool("iperf3", "ethtool")
    entry = set_route_to_b(lab, "v4", "encap", ("T:end", "B:dt46"))
    sh("ethtool", "-K", "up0", "tso", "off", "gso", "off", ns=lab.node_a)
    try:
        with capture(lab.transit, "ta0", snaplen=160) as frames:
            doc = iperf(lab, POD_B4, seconds=2)
    finally:
        sh("ethtool", "-K", "up0", "tso", "on", "gso", "on", ns=lab.node_a, check=False)
    bps = check_throughput(doc)
    print(f"iperf3 v4 encap 2 SIDs, uplink offloads off: {bps / 1e9:.2f} Gbit/s")
    outers = [o for o in map(parse_outer, frames) if o is not None and o.src == SRC_A]
    assert len(outers) > 100
    assert max(o.wire_len for o in outers) <= 1500 + 14
    assert max(o.wire_len for o in outers) > 1400, "full-sized segments were seen"
    for o in outers:
        assert o.srh is not None and o.srh["segments"] == list(reversed(entry.segments))
        assert o.inner_proto == 4 and o.inner[9] == 6  # TCP inside
        assert o.payload_len == o.wire_len - 14 - 40


def test_an_upgraded_object_replaces_the_programs_and_keeps_the_maps(lab: Lab,
                                                                     tmp_path: Path) -> None:
    """A speaker of a newer version (another object) loads its programs beside the running
    ones, keeps every map entry, re-attaches in place and unpins the old programs; traffic
    flows before, during and after."""
    entry = set_route_to_b(lab, "v4", "encap", ("B:dx4",))
    old = lab.dp["A"]
    before = sorted(os.listdir(os.path.join(lab.pins["A"], "progs")))
    newer = tmp_path / "srv6.bpf.o"
    newer.write_bytes(build.build().read_bytes() + b"\0" * 16)  # the same code, another digest
    new = BpfDatapath(lab.pins["A"], netns=lab.node_a, obj_path=str(newer))
    try:
        new.load()
        assert entry in new.list_encap() and new.list_sids() == old.list_sids()
        assert new.attached() == {"pa0": f"{PROG_ENCAP} (stale)", "up0": f"{PROG_SID} (stale)"}
        lab.ping(lab.pod_a, POD_B4)  # the old programs still run: nothing was cut
        assert new.attach("pa0", PROG_ENCAP) is True
        assert new.attach("up0", PROG_SID) is True
        assert new.attached() == {"pa0": PROG_ENCAP, "up0": PROG_SID}
        after = sorted(os.listdir(os.path.join(lab.pins["A"], "progs")))
        assert len(after) == 1 and after != before
        lab.ping(lab.pod_a, POD_B4)
    finally:
        new.close()
    # back to the object the other tests run, the same way
    lab.dp["A"] = again = BpfDatapath(lab.pins["A"], netns=lab.node_a)
    again.load()
    again.attach("pa0", PROG_ENCAP)
    again.attach("up0", PROG_SID)
    old.close()


def test_restart_reuses_the_pinned_maps(lab: Lab) -> None:
    entry = set_route_to_b(lab, "v4", "encap", ("B:dx4",))
    old = lab.dp["A"]
    new = BpfDatapath(lab.pins["A"], netns=lab.node_a)
    try:
        new.load()
        assert entry in new.list_encap()
        assert new.list_encap() == old.list_encap()
        assert new.list_sids() == old.list_sids()
        assert new.list_locators() == old.list_locators()
        assert new.attached() == {"pa0": PROG_ENCAP, "up0": PROG_SID}
        assert new.attach("pa0", PROG_ENCAP) is False
        assert new.attach("up0", PROG_SID) is False
        lab.ping(lab.pod_a, POD_B4)
        assert new.counters()["encap"] == old.counters()["encap"]
    finally:
        new.close()


# --- attach / detach / remove on a namespace of their own --------------------------------------

@pytest.fixture
def one_ns(bpffs: str) -> Iterator[tuple[str, str]]:
    need_root()
    nets = Netns()
    try:
        ns = nets.add("bpfa")
        sh("ip", "link", "add", "name", "xa0", "type", "veth", "peer", "name", "xb0", ns=ns)
        sh("ip", "link", "add", "name", "xc0", "type", "veth", "peer", "name", "xd0", ns=ns)
        yield ns, os.path.join(bpffs, unique("dp"))
    finally:
        nets.close()


def tc_filters(ns: str, dev: str) -> str:
    return sh("tc", "filter", "show", "dev", dev, "ingress", ns=ns).stdout


def test_attach_is_idempotent_and_leaves_foreign_filters_alone(one_ns: tuple[str, str]) -> None:
    ns, pin = one_ns
    sh("tc", "qdisc", "add", "dev", "xa0", "clsact", ns=ns)
    sh("tc", "filter", "add", "dev", "xa0", "ingress", "prio", "5", "protocol", "all", "u32",
       "match", "u32", "0", "0", "classid", "1:1", ns=ns)
    dp = BpfDatapath(pin, netns=ns)
    try:
        assert dp.attached() == {}
        assert dp.attach("xa0", PROG_ENCAP) is True
        assert dp.attach("xa0", PROG_ENCAP) is False
        assert dp.attached() == {"xa0": PROG_ENCAP}
        assert dp.attach("xa0", PROG_SID) is True     # replaced: another program id
        assert dp.attach("xa0", PROG_SID) is False
        assert dp.attach("xc0", PROG_SID) is True
        assert dp.attached() == {"xa0": PROG_SID, "xc0": PROG_SID}
        shown = tc_filters(ns, "xa0")
        assert shown.count("flr_sid") >= 1 and "flr_encap" not in shown
        assert "u32" in shown
        dp.detach("xa0")
        dp.detach("xa0")
        dp.detach("nosuchdev")
        assert dp.attached() == {"xc0": PROG_SID}
        shown = tc_filters(ns, "xa0")
        assert "u32" in shown and "flr_" not in shown
        assert "clsact" in sh("tc", "qdisc", "show", "dev", "xa0", ns=ns).stdout
        dp.detach("xc0")   # nothing else there: clsact goes too
        assert "clsact" not in sh("tc", "qdisc", "show", "dev", "xc0", ns=ns).stdout
    finally:
        dp.remove()


def test_remove_leaves_no_pin_and_no_filter_of_ours(one_ns: tuple[str, str]) -> None:
    ns, pin = one_ns
    dp = BpfDatapath(pin, netns=ns)
    dp.attach("xa0", PROG_ENCAP)
    dp.attach("xb0", PROG_SID)
    assert os.path.exists(os.path.join(pin, "maps", "flr_enc4"))
    assert len(glob.glob(os.path.join(pin, "progs", "*", "flr_sid"))) == 1
    dp.remove()
    assert not os.path.exists(pin)
    for dev in ("xa0", "xb0"):
        assert "flr_" not in tc_filters(ns, dev)
    assert BpfDatapath(pin, netns=ns).attached() == {}
    dp.remove()   # idempotent
