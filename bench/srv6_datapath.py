"""SRv6 datapaths pod to pod: the eBPF (tc) modes against plain routing, kernel seg6 and VXLAN.

    sudo python3 bench/srv6_datapath.py [--reps 5] [--seconds 3] [--json FILE]

Builds, in namespaces of its own,

    pod A --eth0/flr..-- node A --up0/ta0-- T1 --tb0/ta0-- T2 ... T5 --tb0/up0-- node B
          --flr../eth0-- pod B

(five transits, "WAN" routers, that every path crosses; the waypoints of a path are some of them)

with IPv6 (and IPv4) underlay addresses and static routes, one pod per node made by the real
`flatroute-cni` ADD (pod MTU 1400, so 64 to 80 bytes of SRv6 fit the 1500-byte underlay) and
removed by its DEL at the end. Then, in ONE run, each repetition runs every path once, in an
order rotating from one repetition to the next:

  plain       plain IPv4 routing through the transit (the reference)
  bpf-encap   eBPF H.Encaps, one SID (End.DX4 by flr_sid at the far node's uplink ingress)
  bpf-red     eBPF H.Encaps.Red, one SID (no SRH)
  bpf-2sid    eBPF H.Encaps, two SIDs: an End waypoint on T1 (flr_sid there), End.DX4
  full-2wp    eBPF H.Encaps.Red through T1 and T3 (End each), End.DX4: an SRH of 2 segments
  full-5wp    eBPF H.Encaps.Red through T1..T5 (End each), End.DX4: an SRH of 5 segments
  usid-0      eBPF uSID (F3216), no waypoint: the node's uDT46 in the destination, no SRH
  usid-2      eBPF uSID through T1 and T3 (uN each): one container, no SRH
  usid-5      eBPF uSID through T1..T5 (uN each): six uSIDs, one container, no SRH
  seg6        kernel `encap seg6 mode encap` + `seg6local End.DX4`, only if the kernel has it
  vxlan       kernel VXLAN between the nodes over the IPv4 underlay (what one would use instead)

Both directions take the same path (the TCP ACKs too). Switching paths changes only the nodes'
routes, the eBPF maps and which interfaces carry our tc filters; the pods are never touched.
In the eBPF modes the nodes have no route to the other pod block at all, so every packet that
arrives is known to have crossed the eBPF datapath (the counters are checked too).

Before the repetitions, one echo request per path is captured at T1 and decoded: the bytes of
encapsulation per packet (frame length less the Ethernet header and the inner IPv4 packet).

Per path and repetition: iperf3 TCP throughput (Gbit/s, received) and 64-byte UDP packets/s as
received by the server (iperf3 -u -l 64 -b 10G, the server's own JSON). The table gives the
median [min-max] over repetitions, and the ratio to plain routing *of the same repetition*,
median [min-max]. This machine is shared and noisy: read the ratios, never the absolute
figures, and do not rank differences smaller than ~30 %.

Then the control-plane side: installing then removing 10,000 distinct remote IPv4 /26
prefixes (EncapEntry) through `BpfDatapath.apply` (a scratch namespace and pin directory),
against `ip -batch` adding then deleting 10,000 plain routes in a scratch namespace, interleaved,
in the same run; rates per second and the ratio adapter / ip -batch (the ip figure includes
starting `ip`, the adapter's only the apply() call on prebuilt entries).

Goals (each printed as met / not met, for TCP and for UDP64, on the median ratios): eBPF
H.Encaps.Red >= 0.95x plain, eBPF H.Encaps (1 SID) >= 0.85x plain, every eBPF mode ahead of
VXLAN in the same run (with in how many repetitions it was ahead), the adapter's install and
remove rates >= 1.0x ip -batch; the five-waypoint uSID path carries 40 bytes of encapsulation
(against 128 for H.Encaps.Red with full SIDs) and runs at >= 0.90x plain. The kernel seg6
path runs only where `speaker.capabilities` proves the kernel has seg6 (else "kernel seg6:
not run: <reason>"); VXLAN likewise.
`--json FILE` writes every sample (with the eBPF counters' deltas per run) and every figure.

A missed goal never makes the exit status non-zero. Everything it creates (namespaces, links,
the bpffs mount and pin directories, iperf3 servers, the CNI state) is removed at the end, also
on failure or Ctrl-C. No traffic leaves its namespaces.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Address
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from flatroute.logging import configure as configure_logging  # noqa: E402

# before the datapath module binds its logger: only warnings, the figures stay readable
configure_logging(json=True, level="warning")

from bench.srv6_paths import (  # noqa: E402
    CHAIN,
    SR_PATHS,
    TRANSITS,
    end_sid,
    expected_overhead,
    full_locator,
    overhead,
    usid_locator,
)
from speaker.bpf.datapath import PROG_ENCAP, PROG_SID, BpfDatapath  # noqa: E402
from speaker.bpf.maps import EncapEntry, LocatorEntry, SidEntry, UsidEntry  # noqa: E402
from speaker.capabilities import KERNEL_NEEDS, Capabilities, probe  # noqa: E402

# --- addressing (only inside our namespaces) ----------------------------------------------------
BLOCK_A, BLOCK_B = IPv4Network("10.70.1.0/26"), IPv4Network("10.70.2.0/26")
#: link i (1..6) joins CHAIN[i-1] (.1 / ::1) and CHAIN[i] (.2 / ::2); node A's and node B's
#: underlay addresses and their neighbours' ("TA": T1's toward A, "TB": T5's toward B)
N_LINKS = len(CHAIN) - 1
UL4 = {"A": "198.18.1.1", "TA": "198.18.1.2", "TB": f"198.18.{N_LINKS}.1",
       "B": f"198.18.{N_LINKS}.2"}
UL6 = {"A": "2001:db8:1::1", "TA": "2001:db8:1::2", "TB": f"2001:db8:{N_LINKS}::1",
       "B": f"2001:db8:{N_LINKS}::2"}
VX4 = {"A": "172.31.255.1", "B": "172.31.255.2"}
SRC = {"A": IPv6Address("fc00:a::1"), "B": IPv6Address("fc00:b::1")}
DX4 = {"A": IPv6Address("fc00:a::d4"), "B": IPv6Address("fc00:b::d4")}
KSID = {"A": "fc00:a::100", "B": "fc00:b::100"}   # kernel seg6local End.DX4
POD_MTU = 1400

PATHS: list[tuple[str, str]] = [
    ("plain", "plain IPv4 routing"),
    ("bpf-encap", "eBPF H.Encaps 1 SID"),
    ("bpf-red", "eBPF H.Encaps.Red 1 SID"),
    ("bpf-2sid", "eBPF H.Encaps 2 SIDs (End)"),
    ("seg6", "kernel seg6 encap+End.DX4"),
    ("vxlan", "kernel VXLAN"),
    *((name, p.label) for name, p in SR_PATHS.items() if name not in
      ("bpf-encap", "bpf-red", "bpf-2sid")),
]
LABEL = dict(PATHS)
BPF_PATHS = tuple(SR_PATHS)
UDP_RATE = "10G"

N_PREFIXES = 10_000


def sh(*args: str, ns: str | None = None, check: bool = True, timeout: float = 60,
       stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (in netns ns: `ip netns exec`); raise with its stderr when it fails."""
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin,
                         check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {res.returncode}: "
                           f"{(res.stderr or res.stdout).strip()}")
    return res


def ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "-n", ns, *args, check=check)


def sysctl(ns: str, *settings: str, check: bool = True) -> None:
    for s in settings:
        sh("sysctl", "-qw", s, ns=ns, check=check)


class Cleanup:
    """Undo actions, run in reverse order; each one runs even if an earlier one failed."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, fn: Callable[[], object]) -> None:
        self._undo.append((what, fn))

    def run(self) -> None:
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
            except Exception as exc:  # keep cleaning up
                print(f"cleanup: {what}: {exc}", file=sys.stderr)


# --- the lab ------------------------------------------------------------------------------------

class Lab:
    def __init__(self, tag: str, cleanup: Cleanup, tmp: str, bpffs: str) -> None:
        self.tag, self.cleanup, self.tmp, self.bpffs = tag, cleanup, tmp, bpffs
        self.ns: dict[str, str] = {}
        self.dp: dict[str, BpfDatapath] = {}
        self.pod_ip: dict[str, str] = {}
        self.hostif: dict[str, str] = {}
        self.attached: dict[tuple[str, str], str] = {}   # (node key, ifname) -> program
        self.vxlan_reason = ""
        self.kernel_seg6 = False
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = os.path.join(tmp, "iperf3-server.log")

    def add_ns(self, key: str) -> str:
        name = f"frsb{self.tag}{key.lower()}"
        sh("ip", "netns", "add", name)
        self.cleanup.push(f"netns {name}", lambda: sh("ip", "netns", "del", name))
        self.ns[key] = name
        ip(name, "link", "set", "lo", "up")
        return name

    def veth(self, a: str, if_a: str, b: str, if_b: str) -> None:
        ip(self.ns[a], "link", "add", if_a, "type", "veth", "peer", "name", if_b,
           "netns", self.ns[b])
        ip(self.ns[a], "link", "set", if_a, "up")
        ip(self.ns[b], "link", "set", if_b, "up")

    # -- CNI -------------------------------------------------------------------------------------

    def cni(self, command: str, node: str, pod: str) -> dict[str, Any]:
        plugin = shutil.which("flatroute-cni")
        if plugin is None:
            raise RuntimeError("flatroute-cni is not on PATH (pip install -e . / cni install)")
        conf = {"cniVersion": "1.1.0", "name": f"frsb{self.tag}", "type": "flatroute-cni",
                "nodeFile": os.path.join(self.tmp, f"node-{node}.json"),
                "dataDir": os.path.join(self.tmp, f"cni-{node}")}
        env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": f"bench{pod.lower()}",
               "CNI_NETNS": f"/run/netns/{self.ns[pod]}", "CNI_IFNAME": "eth0",
               "CNI_PATH": os.path.dirname(plugin)}
        res = subprocess.run(["ip", "netns", "exec", self.ns[node], plugin],
                             input=json.dumps(conf), capture_output=True, text=True, env=env,
                             timeout=60, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"flatroute-cni {command} for {pod} on {node} failed: "
                               f"{res.stdout.strip()} {res.stderr.strip()}")
        return json.loads(res.stdout) if res.stdout.strip() else {}

    def add_pod(self, node: str, pod: str, block: IPv4Network) -> None:
        with open(os.path.join(self.tmp, f"node-{node}.json"), "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "node": f"bench-{node.lower()}",
                       "podBlocks": {"ipv4": [str(block)], "ipv6": []},
                       "mtu": POD_MTU, "routeProtocol": 70}, fh)
        self.add_ns(pod)
        # DEL is safe even if ADD failed half-way; it runs before the namespaces go
        self.cleanup.push(f"CNI DEL {pod}", lambda: self.cni("DEL", node, pod))
        result = self.cni("ADD", node, pod)
        host = [i["name"] for i in result.get("interfaces", []) if not i.get("sandbox")]
        addrs = [a["address"].split("/")[0] for a in result.get("ips", [])
                 if ipaddress.ip_address(a["address"].split("/")[0]).version == 4]
        if not host or not addrs:
            raise RuntimeError(f"unexpected CNI result: {result}")
        self.hostif[node], self.pod_ip[pod] = host[0], addrs[0]

    # -- build -----------------------------------------------------------------------------------

    def build(self) -> None:
        self._namespaces()
        self._underlay()
        self._vxlan()
        if self.kernel_seg6:
            self._kernel_sids()
        # the pods, by the real CNI plugin
        self.add_pod("A", "PA", BLOCK_A)
        self.add_pod("B", "PB", BLOCK_B)
        for ns in (self.ns[k] for k in CHAIN):
            for dev in sh("ls", "/sys/class/net", ns=ns).stdout.split():
                sysctl(ns, f"net.ipv4.conf.{dev}.rp_filter=0", check=False)
        self._bpf_datapaths()

    def _namespaces(self) -> None:
        """Nodes A and B and the transits T1..T5, forwarding, joined by veths in a chain."""
        for key in CHAIN:
            ns = self.add_ns(key)
            sysctl(ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                   "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                   "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
            if self.kernel_seg6:
                sysctl(ns, "net.ipv6.conf.all.seg6_enabled=1",
                       "net.ipv6.conf.default.seg6_enabled=1", check=False)
        for i in range(N_LINKS):
            left, right = CHAIN[i], CHAIN[i + 1]
            self.veth(left, "up0" if left == "A" else "tb0",
                      right, "up0" if right == "B" else "ta0")

    def _underlay(self) -> None:
        for i in range(N_LINKS):
            for key, dev, host in ((CHAIN[i], "up0" if i == 0 else "tb0", 1),
                                   (CHAIN[i + 1], "up0" if i == N_LINKS - 1 else "ta0", 2)):
                ip(self.ns[key], "addr", "add", f"198.18.{i + 1}.{host}/24", "dev", dev)
                ip(self.ns[key], "-6", "addr", "add", f"2001:db8:{i + 1}::{host}/64", "dev",
                   dev, "nodad")
        # every locator (full and uSID), the pod blocks and the nodes' underlay subnets,
        # statically, toward the side they are on
        for pos, me in enumerate(CHAIN):
            for other_pos, other in enumerate(CHAIN):
                if other_pos == pos:
                    continue
                right = other_pos > pos
                via6 = f"2001:db8:{pos + 1}::2" if right else f"2001:db8:{pos}::1"
                for loc in (full_locator(other), usid_locator(other)):
                    ip(self.ns[me], "-6", "route", "add", str(loc), "via", via6)
            if me in TRANSITS:
                via_l, via_r = f"198.18.{pos}.1", f"198.18.{pos + 1}.2"
                ip(self.ns[me], "route", "add", str(BLOCK_A), "via", via_l)
                ip(self.ns[me], "route", "add", str(BLOCK_B), "via", via_r)
                if pos > 1:
                    ip(self.ns[me], "route", "add", "198.18.1.0/24", "via", via_l)
                if pos < N_LINKS - 1:
                    ip(self.ns[me], "route", "add", f"198.18.{N_LINKS}.0/24", "via", via_r)

    def _vxlan(self) -> None:
        """VXLAN between the nodes, over the IPv4 underlay (the transit routes 198.18.x);
        where the kernel has no VXLAN, `vxlan_reason` says why and the path is skipped."""
        a, b = self.ns["A"], self.ns["B"]
        ip(a, "route", "add", f"198.18.{N_LINKS}.0/24", "via", UL4["TA"])
        ip(b, "route", "add", "198.18.1.0/24", "via", UL4["TB"])
        res = ip(a, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", UL4["A"],
                 "remote", UL4["B"], "dstport", "4789", "dev", "up0", check=False)
        if res.returncode != 0:
            self.vxlan_reason = (res.stderr or res.stdout).strip() or f"exit {res.returncode}"
            return
        ip(b, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", UL4["B"],
           "remote", UL4["A"], "dstport", "4789", "dev", "up0")
        for ns, key in ((a, "A"), (b, "B")):
            ip(ns, "addr", "add", f"{VX4[key]}/30", "dev", "vx0")
            ip(ns, "link", "set", "vx0", "up")

    def _kernel_sids(self) -> None:
        """The kernel seg6local End.DX4 SID of each node (for the seg6 path)."""
        for node in ("A", "B"):
            ns = self.ns[node]
            sysctl(ns, "net.ipv6.conf.up0.seg6_enabled=1", check=False)
            ip(ns, "-6", "route", "add", f"{KSID[node]}/128", "encap", "seg6local",
               "action", "End.DX4", "nh4", "0.0.0.0", "dev", "up0")

    def _bpf_datapaths(self) -> None:
        """The eBPF datapath on every node and transit, with their SIDs and locators: the
        nodes End.DX4 and a uDT46 uSID, the transits End and a uN uSID."""
        for key in CHAIN:
            dp = BpfDatapath(os.path.join(self.bpffs, f"dp-{key}"), netns=self.ns[key])
            self.cleanup.push(f"bpf datapath {key}", dp.remove)
            dp.load()
            self.dp[key] = dp
            node = key in ("A", "B")
            sids: list[SidEntry | UsidEntry | LocatorEntry] = [
                SidEntry(DX4[key] if node else end_sid(key), "End.DX4" if node else "End"),
                UsidEntry(usid_locator(key), "uDT46" if node else "uN"),
                LocatorEntry(full_locator(key)), LocatorEntry(usid_locator(key))]
            failed = dp.apply(put=sids)
            if failed:
                raise RuntimeError(f"SID map of {key}: {failed}")

    # -- switching paths -------------------------------------------------------------------------

    def _filters(self, want: dict[tuple[str, str], str]) -> None:
        for key, dev in list(self.attached):
            if (key, dev) not in want:
                self.dp[key].detach(dev)
                del self.attached[(key, dev)]
        for (key, dev), prog in want.items():
            if self.attached.get((key, dev)) != prog:
                self.dp[key].attach(dev, prog)
                self.attached[(key, dev)] = prog

    def use(self, path: str) -> None:
        """Routes, maps and filters for path; the pods stay as they are."""
        remote = {"A": BLOCK_B, "B": BLOCK_A}
        far = {"A": "B", "B": "A"}
        for node in ("A", "B"):
            ns, dst = self.ns[node], str(remote[node])
            if path == "plain":
                ip(ns, "route", "replace", dst, "via", UL4["TA" if node == "A" else "TB"],
                   "dev", "up0")
            elif path == "vxlan":
                ip(ns, "route", "replace", dst, "via", VX4[far[node]], "dev", "vx0")
            elif path == "seg6":
                ip(ns, "route", "replace", dst, "encap", "seg6", "mode", "encap", "segs",
                   KSID[far[node]], "dev", "up0")
            else:   # eBPF: no route at all, so nothing can bypass the datapath unnoticed
                ip(ns, "route", "del", dst, check=False)
        want: dict[tuple[str, str], str] = {}
        if path in BPF_PATHS:
            sr = SR_PATHS[path]
            for node in ("A", "B"):
                src = usid_locator(node).network_address if sr.usid else SRC[node]
                entry = EncapEntry(remote[node], sr.mode, sr.segments(node, DX4), src)
                failed = self.dp[node].apply(put=[entry])
                if failed:
                    raise RuntimeError(f"encap entry on {node}: {failed}")
                want[(node, self.hostif[node])] = PROG_ENCAP
                want[(node, "up0")] = PROG_SID
            for t in sr.waypoints:
                want[(t, "ta0")] = PROG_SID
                want[(t, "tb0")] = PROG_SID
        self._filters(want)
        if path not in BPF_PATHS:
            for node in ("A", "B"):
                self.dp[node].apply(delete=[EncapEntry(remote[node], "encap",
                                                       (DX4[far[node]],), SRC[node])])

    def counters(self) -> dict[str, dict[str, int]]:
        return {k: dp.counters() for k, dp in self.dp.items()}

    def encap_bytes(self, path: str) -> int | None:
        """Bytes of encapsulation of one echo request on `path`, captured arriving at T1."""
        self.use(path)
        pcap = os.path.join(self.tmp, f"encap-{path}.pcap")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns["T1"], "tcpdump", "-Z", "root", "-n", "-i", "ta0",
             "-Q", "in", "-U", "-c", "1", "-s", "256", "-w", pcap,
             "(ip and icmp) or (ip6 and (ip6[6] == 43 or ip6[6] == 4)) or "
             "(udp port 4789 and udp[28:2] == 0x0800)"],  # VXLAN with IPv4 inside, not ARP
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            if "listening" not in proc.stderr.readline():
                return None
            self.ping()
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with open(pcap, "rb") as fh:
            raw = fh.read()
        if len(raw) < 40:
            return None
        end = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        incl, orig = struct.unpack(end + "II", raw[32:40])
        return overhead(raw[40:40 + incl], orig)

    def ping(self) -> tuple[bool, str]:
        res = sh("ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", self.pod_ip["PB"],
                 ns=self.ns["PA"], check=False)
        return res.returncode == 0, res.stdout.strip().splitlines()[-1] if res.stdout else ""

    # -- iperf3 ----------------------------------------------------------------------------------

    def start_server(self) -> None:
        """A persistent iperf3 server in pod B, in JSON mode (so --get-server-output gives its
        JSON); its output goes to a file, never to a pipe nobody reads."""
        self.stop_server()
        with open(self.server_log, "ab") as log:
            self.server = subprocess.Popen(
                ["ip", "netns", "exec", self.ns["PB"], "iperf3", "-s", "-J", "-B",
                 self.pod_ip["PB"]], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            res = sh("ss", "-Hltn", "sport = :5201", ns=self.ns["PB"], check=False)
            if "5201" in res.stdout:
                return
            if self.server.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("the iperf3 server did not start")

    def stop_server(self) -> None:
        if self.server is not None:
            if self.server.poll() is None:
                self.server.terminate()
                try:
                    self.server.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.server.kill()
                    self.server.wait()
            self.server = None

    def iperf(self, seconds: int, *extra: str) -> dict[str, Any]:
        last = ""
        for attempt in range(3):
            res = sh("iperf3", "-c", self.pod_ip["PB"], "-t", str(seconds), "-J", *extra,
                     ns=self.ns["PA"], check=False, timeout=seconds + 40)
            try:
                doc: dict[str, Any] = json.loads(res.stdout)
            except ValueError:
                doc = {"error": (res.stderr or res.stdout).strip() or f"exit {res.returncode}"}
            if res.returncode == 0 and "error" not in doc:
                return doc
            last = str(doc.get("error"))
            time.sleep(0.5)
            if attempt == 1:
                self.start_server()   # a server left busy by a broken test
        raise RuntimeError(f"iperf3 failed: {last}")

    def tcp(self, seconds: int) -> tuple[float, list[float]]:
        doc = self.iperf(seconds)
        bps = float(doc["end"]["sum_received"]["bits_per_second"])
        rates = [float(i["sum"]["bits_per_second"]) for i in doc.get("intervals", [])]
        return bps / 1e9, [r / 1e9 for r in rates]

    def udp64(self, seconds: int) -> tuple[float, dict[str, Any]]:
        doc = self.iperf(seconds, "-u", "-l", "64", "-b", UDP_RATE, "--get-server-output")
        server = doc.get("server_output_json")
        if not isinstance(server, dict):
            raise RuntimeError("iperf3 gave no server-side JSON (--get-server-output)")
        s = server["end"]["sum"]
        received = int(s["packets"]) - int(s["lost_packets"])
        secs = float(s["seconds"]) or float(seconds)
        if received <= 0:
            raise RuntimeError(f"no UDP packet received: {s}")
        sent = doc["end"]["sum"]
        return received / secs, {"server_packets": int(s["packets"]),
                                 "server_lost": int(s["lost_packets"]), "seconds": secs,
                                 "client_packets": int(sent.get("packets", 0))}


# --- the datapath comparison ---------------------------------------------------------------------

def delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
          ) -> dict[str, dict[str, int]]:
    return {k: {c: v - before[k].get(c, 0) for c, v in after[k].items()
                if v - before[k].get(c, 0)} for k in after}


def check_bpf_counters(path: str, d: dict[str, dict[str, int]]) -> list[str]:
    problems = []
    for node in ("A", "B"):
        if d[node].get("encap", 0) == 0:
            problems.append(f"node {node} encapsulated nothing")
        if d[node].get("decap", 0) == 0:
            problems.append(f"node {node} decapsulated nothing")
    sr = SR_PATHS[path]
    counter = "usid_shift" if sr.usid else "end"
    for t in sr.waypoints:
        if d[t].get(counter, 0) == 0:
            problems.append(f"the waypoint {t}'s {'uN' if sr.usid else 'End'} did nothing")
    for k, c in d.items():
        for name in ("no_sid", "sl_mismatch", "too_big", "fib_fail", "error", "usid_end"):
            if c.get(name):
                problems.append(f"{k}: {name} +{c[name]}")
    return problems


def run_paths(lab: Lab, paths: list[str], reps: int, seconds: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    for rep in range(reps):
        k = rep % len(paths)
        order = paths[k:] + paths[:k]
        print(f"repetition {rep + 1}/{reps}: {' '.join(order)}", flush=True)
        for path in order:
            s: dict[str, Any] = {"rep": rep}
            try:
                lab.use(path)
                ok, line = lab.ping()
                if not ok:
                    raise RuntimeError(f"pod A cannot ping pod B: {line}")
                before = lab.counters()
                s["tcp_gbps"], s["tcp_intervals"] = lab.tcp(seconds)
                s["udp_pps"], s["udp"] = lab.udp64(seconds)
                s["counters"] = delta(lab.counters(), before)
                stalled = [i for i, r in enumerate(s["tcp_intervals"]) if r < 0.001]
                if stalled:
                    s.setdefault("problems", []).append(f"TCP stalled in intervals {stalled}")
                if path in BPF_PATHS:
                    s.setdefault("problems", []).extend(check_bpf_counters(path, s["counters"]))
            except RuntimeError as exc:
                s["error"] = str(exc)
                with_counters = {k: dp.counters() for k, dp in lab.dp.items()}
                s["counters_total"] = with_counters
                print(f"  {path}: FAILED: {exc}\n    counters: {with_counters}", flush=True)
            for p in s.get("problems", []):
                print(f"  {path}: problem: {p}", flush=True)
            if "tcp_gbps" in s and "udp_pps" in s:
                print(f"  {path:<10} TCP {s['tcp_gbps']:6.2f} Gbit/s   UDP64 "
                      f"{s['udp_pps'] / 1e3:7.1f} kpps", flush=True)
            samples[path].append(s)
    return samples


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    plain = {s["rep"]: s for s in samples.get("plain", []) if "error" not in s}
    out: dict[str, Any] = {}
    for path, runs in samples.items():
        good = [s for s in runs if "error" not in s]
        entry: dict[str, Any] = {"failed": len(runs) - len(good)}
        for metric in ("tcp_gbps", "udp_pps"):
            entry[metric] = stats([s[metric] for s in good])
            ratios = [s[metric] / plain[s["rep"]][metric] for s in good
                      if s["rep"] in plain and plain[s["rep"]][metric] > 0]
            entry[metric + "_ratio"] = stats(ratios)
        out[path] = entry
    return out


def fmt(st: dict[str, float] | None, scale: float = 1.0, digits: int = 2) -> str:
    if st is None:
        return "-"
    return (f"{st['median'] / scale:.{digits}f} [{st['min'] / scale:.{digits}f}-"
            f"{st['max'] / scale:.{digits}f}]")


def print_table(summary: dict[str, Any], reps: int, seconds: int,
                encap: dict[str, int | None]) -> None:
    print()
    print(f"pod to pod, {reps} interleaved repetitions, {seconds} s per test, pod MTU {POD_MTU}; "
          "median [min-max]; ratio = path / plain routing of the same repetition; encap = "
          "bytes of encapsulation per packet, read off the wire at T1")
    head = (f"{'path':<28} {'encap':>5} {'TCP Gbit/s':>19} {'TCP ratio':>19} "
            f"{'UDP64 kpps':>22} {'UDP64 ratio':>19}")
    print(head)
    print("-" * len(head))
    for path, entry in summary.items():
        failed = f"  ({entry['failed']} failed)" if entry["failed"] else ""
        got = encap.get(path)
        print(f"{LABEL[path]:<28} {'-' if got is None else got:>5} {fmt(entry['tcp_gbps']):>19} "
              f"{fmt(entry['tcp_gbps_ratio']):>19} {fmt(entry['udp_pps'], 1e3, 1):>22} "
              f"{fmt(entry['udp_pps_ratio']):>19}{failed}")


def per_rep(samples: dict[str, list[dict[str, Any]]], path: str, metric: str
            ) -> dict[int, float]:
    return {s["rep"]: s[metric] for s in samples.get(path, []) if "error" not in s}


def usid_goals(summary: dict[str, Any], encap: dict[str, int | None]) -> list[dict[str, Any]]:
    """The five-waypoint uSID path: 40 bytes (against full SIDs' 128), >= 0.90x plain."""
    out: list[dict[str, Any]] = []
    if "usid-5" not in summary:
        return out
    got, full = encap.get("usid-5"), encap.get("full-5wp")
    want = expected_overhead(SR_PATHS["usid-5"])
    out.append({"goal": f"{LABEL['usid-5']}: {want} bytes of encap (full SIDs: {full})",
                "value": None if got is None or not full else got / full,
                "met": got == want})
    for metric, name in (("tcp_gbps", "TCP"), ("udp_pps", "UDP64")):
        st = summary["usid-5"].get(metric + "_ratio")
        value = st["median"] if st else None
        out.append({"goal": f"{LABEL['usid-5']} {name} >= 0.90x plain", "value": value,
                    "met": value is not None and value >= 0.9})
    return out


def goals(summary: dict[str, Any], samples: dict[str, list[dict[str, Any]]]
          ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    metrics = (("tcp_gbps", "TCP"), ("udp_pps", "UDP64"))
    for path, need in (("bpf-red", 0.95), ("bpf-encap", 0.85)):
        for metric, name in metrics:
            st = summary.get(path, {}).get(metric + "_ratio")
            value = st["median"] if st else None
            out.append({"goal": f"{LABEL[path]} {name} >= {need:.2f}x plain", "value": value,
                        "met": value is not None and value >= need})
    if "vxlan" in summary:
        for path in (p for p in BPF_PATHS if p in summary):
            for metric, name in metrics:
                mine, vx = summary[path][metric], summary["vxlan"][metric]
                a, b = per_rep(samples, path, metric), per_rep(samples, "vxlan", metric)
                wins = sum(1 for r in a if r in b and a[r] > b[r])
                both = sum(1 for r in a if r in b)
                met = bool(mine and vx and mine["median"] > vx["median"])
                value = mine["median"] / vx["median"] if mine and vx else None
                out.append({"goal": f"{LABEL[path]} {name} ahead of VXLAN", "value": value,
                            "met": met, "reps_ahead": f"{wins}/{both}"})
    return out


# --- install / remove 10,000 prefixes ------------------------------------------------------------

def prefixes(n: int) -> list[IPv4Network]:
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    return [IPv4Network((base + 64 * i, 26)) for i in range(n)]


def bench_install(tag: str, cleanup: Cleanup, bpffs: str, tmp: str, reps: int
                  ) -> dict[str, Any]:
    ns = f"frsb{tag}s"
    sh("ip", "netns", "add", ns)
    cleanup.push(f"netns {ns}", lambda: sh("ip", "netns", "del", ns))
    ip(ns, "link", "set", "lo", "up")
    ip(ns, "link", "add", "s0", "type", "veth", "peer", "name", "s1")
    ip(ns, "link", "set", "s0", "up")
    ip(ns, "link", "set", "s1", "up")
    ip(ns, "addr", "add", "192.0.2.1/24", "dev", "s0")
    nets = prefixes(N_PREFIXES)
    add_file, del_file = os.path.join(tmp, "add.batch"), os.path.join(tmp, "del.batch")
    with open(add_file, "w", encoding="ascii") as fh:
        fh.writelines(f"route add {p} via 192.0.2.2 dev s0\n" for p in nets)
    with open(del_file, "w", encoding="ascii") as fh:
        fh.writelines(f"route del {p} via 192.0.2.2 dev s0\n" for p in nets)
    entries = [EncapEntry(p, "encap", (DX4["B"],), SRC["A"]) for p in nets]
    dp = BpfDatapath(os.path.join(bpffs, "dp-scratch"), netns=ns)
    cleanup.push("bpf datapath scratch", dp.remove)
    dp.load()

    def run_ip() -> tuple[float, float]:
        t0 = time.perf_counter()
        sh("ip", "-n", ns, "-batch", add_file, timeout=300)
        t1 = time.perf_counter()
        count = len(ip(ns, "route", "show", "via", "192.0.2.2").stdout.splitlines())
        if count != N_PREFIXES:
            raise RuntimeError(f"ip -batch installed {count} routes, not {N_PREFIXES}")
        t2 = time.perf_counter()
        sh("ip", "-n", ns, "-batch", del_file, timeout=300)
        t3 = time.perf_counter()
        return t1 - t0, t3 - t2

    def run_bpf(verify: bool) -> tuple[float, float]:
        t0 = time.perf_counter()
        failed = dp.apply(put=entries)
        t1 = time.perf_counter()
        if failed:
            raise RuntimeError(f"adapter install: {len(failed)} failed, first {failed[0]}")
        if verify and len(dp.list_encap()) != N_PREFIXES:
            raise RuntimeError("the encap map does not hold every prefix")
        t2 = time.perf_counter()
        failed = dp.apply(delete=entries)
        t3 = time.perf_counter()
        if failed:
            raise RuntimeError(f"adapter remove: {len(failed)} failed, first {failed[0]}")
        if verify and dp.list_encap():
            raise RuntimeError("the encap map is not empty after removing")
        return t1 - t0, t3 - t2

    times: dict[str, list[tuple[float, float]]] = {"adapter": [], "ip-batch": []}
    for rep in range(reps):
        order = ["adapter", "ip-batch"] if rep % 2 == 0 else ["ip-batch", "adapter"]
        for what in order:
            times[what].append(run_bpf(rep == 0) if what == "adapter" else run_ip())
    return _install_rates(times, reps)


def _install_rates(times: dict[str, list[tuple[float, float]]], reps: int) -> dict[str, Any]:
    """Install and remove rates of each method, and the adapter's ratio to ip -batch."""
    out: dict[str, Any] = {"prefixes": N_PREFIXES, "reps": reps, "raw_seconds": times}
    for what, ts in times.items():
        out[what] = {"install_per_s": stats([N_PREFIXES / a for a, _ in ts]),
                     "remove_per_s": stats([N_PREFIXES / d for _, d in ts])}
    out["ratio"] = {
        "install": stats([ip_t[0] / bpf_t[0] for bpf_t, ip_t in
                          zip(times["adapter"], times["ip-batch"], strict=True)]),
        "remove": stats([ip_t[1] / bpf_t[1] for bpf_t, ip_t in
                         zip(times["adapter"], times["ip-batch"], strict=True)]),
    }
    return out


def print_install(res: dict[str, Any]) -> list[dict[str, Any]]:
    print()
    print(f"{res['prefixes']:,} remote IPv4 /26 prefixes, {res['reps']} interleaved repetitions; "
          "per second, median [min-max]; ratio = adapter rate / ip -batch rate (same rep)")
    head = f"{'':<30} {'install /s':>26} {'remove /s':>26}"
    print(head)
    print("-" * len(head))
    for what, label in (("adapter", "BpfDatapath.apply (maps)"),
                        ("ip-batch", "ip -batch (routes)")):
        print(f"{label:<30} {fmt(res[what]['install_per_s'], 1, 0):>26} "
              f"{fmt(res[what]['remove_per_s'], 1, 0):>26}")
    print(f"{'ratio adapter / ip -batch':<30} {fmt(res['ratio']['install']):>26} "
          f"{fmt(res['ratio']['remove']):>26}")
    out = []
    for phase in ("install", "remove"):
        value = res["ratio"][phase]["median"]
        out.append({"goal": f"adapter {phase} rate >= 1.00x ip -batch", "value": value,
                    "met": value >= 1.0})
    return out


def print_goals(gs: list[dict[str, Any]]) -> None:
    print()
    print("goals")
    for g in gs:
        value = "-" if g["value"] is None else f"{g['value']:.2f}x"
        extra = f" (ahead in {g['reps_ahead']} reps)" if "reps_ahead" in g else ""
        print(f"  {g['goal']:<52} {value:>7}  {'met' if g['met'] else 'NOT MET'}{extra}")


# --- main ----------------------------------------------------------------------------------------

def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions (>= 5 for the report)")
    ap.add_argument("--seconds", type=int, default=3, help="seconds per iperf3 test")
    ap.add_argument("--install-reps", type=int, default=3)
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--paths", help="comma-separated subset of the paths (plain is always "
                    "run: it is the reference), e.g. plain,bpf-red; default: all")
    ap.add_argument("--no-install", action="store_true",
                    help="leave out the 10,000-prefix install/remove comparison")
    return ap.parse_args()


def _missing_prerequisite() -> str | None:
    """What the benchmark lacks to run here (root, a tool), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, bpffs)"
    for tool in ("ip", "iperf3", "ping", "tc", "flatroute-cni"):
        if shutil.which(tool) is None:
            return f"needs {tool} on PATH" + (" (apt-get install -y iperf3)"
                                              if tool == "iperf3" else "")
    return None


def _trap_signals(main_pid: int) -> None:
    """SIGINT, SIGTERM and SIGHUP interrupt the benchmark, so that its clean-up runs."""
    def on_term(sig: int, _frame: object) -> None:
        if os.getpid() != main_pid:
            # a forked helper (pyroute2 forks one to open a socket in a netns): never let it
            # run our clean-up
            os._exit(128 + sig)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)   # also when started with SIGINT ignored (`cmd &`)


def _scratch(tag: str, cleanup: Cleanup) -> tuple[str, str]:
    """A temporary directory and a bpffs of the run's own, both removed by the clean-up."""
    tmp = tempfile.mkdtemp(prefix=f"flr-srv6-bench-{tag}-")
    cleanup.push(f"rm {tmp}", lambda: shutil.rmtree(tmp))
    bpffs = f"/run/flatroute-bench-{tag}"
    os.makedirs(bpffs)
    cleanup.push(f"rmdir {bpffs}", lambda: os.rmdir(bpffs))
    sh("mount", "-t", "bpf", "bpf", bpffs)
    cleanup.push(f"umount {bpffs}", lambda: sh("umount", bpffs))
    return tmp, bpffs


def _paths_to_run(lab: Lab, caps: Capabilities, chosen_arg: str | None
                  ) -> tuple[list[str], dict[str, str]]:
    """The paths this kernel can run (narrowed to --paths), and why the others are not run."""
    paths = [p for p, _ in PATHS]
    notes: dict[str, str] = {}
    if not caps.kernel_srv6:
        notes["seg6"] = caps.why_not(KERNEL_NEEDS)
        paths.remove("seg6")
    if lab.vxlan_reason:
        notes["vxlan"] = lab.vxlan_reason
        paths.remove("vxlan")
    _say_not_run(notes)
    if chosen_arg:
        chosen = {"plain", *chosen_arg.split(",")}
        unknown = chosen - set(LABEL)
        if unknown:
            raise SystemExit(f"unknown paths: {', '.join(sorted(unknown))}")
        paths = [p for p in paths if p in chosen]
    return paths, notes


def _say_not_run(notes: dict[str, str]) -> None:
    for p, why in notes.items():
        print(f"{'kernel seg6' if p == 'seg6' else 'kernel VXLAN'}: not run: {why}")


def _run(args: argparse.Namespace, caps: Capabilities, tag: str, cleanup: Cleanup,
         report: dict[str, Any]) -> None:
    """Build the lab, measure every path (and the install benchmark), print and save it."""
    tmp, bpffs = _scratch(tag, cleanup)
    lab = Lab(tag, cleanup, tmp, bpffs)
    lab.kernel_seg6 = caps.kernel_srv6
    lab.build()
    cleanup.push("iperf3 server", lab.stop_server)
    lab.start_server()
    paths, notes = _paths_to_run(lab, caps, args.paths)
    report["not_run"] = notes
    report["pods"] = {"A": lab.pod_ip["PA"], "B": lab.pod_ip["PB"],
                      "host_veths": lab.hostif}
    encap = {p: lab.encap_bytes(p) for p in paths}
    for p, got in encap.items():
        if p in SR_PATHS and got != expected_overhead(SR_PATHS[p]):
            print(f"  {p}: {got} bytes of encapsulation on the wire, expected "
                  f"{expected_overhead(SR_PATHS[p])}", flush=True)
    report["encap_bytes"] = encap
    samples = run_paths(lab, paths, args.reps, args.seconds)
    summary = summarize(samples)
    report["samples"], report["summary"] = samples, summary
    print_table(summary, args.reps, args.seconds, encap)
    _say_not_run(notes)
    gs = goals(summary, samples) + usid_goals(summary, encap)

    if not args.no_install:
        print("\ninstall / remove benchmark ...", flush=True)
        inst = bench_install(tag, cleanup, bpffs, tmp, args.install_reps)
        report["install"] = inst
        gs += print_install(inst)
    print_goals(gs)
    report["goals"] = gs
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, default=str)
        print(f"\nfigures written to {args.json}")


def main() -> int:
    args = _parse_args()
    missing = _missing_prerequisite()
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    main_pid = os.getpid()
    _trap_signals(main_pid)
    print("probing the kernel (throw-away namespace) ...", flush=True)
    caps = probe()
    tag = uuid.uuid4().hex[:6]
    cleanup = Cleanup()
    report: dict[str, Any] = {"reps": args.reps, "seconds": args.seconds, "pod_mtu": POD_MTU,
                              "kernel": caps.kernel_release}
    code = 0
    try:
        _run(args, caps, tag, cleanup, report)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        code = 130
    except Exception as exc:
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        if os.getpid() == main_pid:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            cleanup.run()
    return code


if __name__ == "__main__":
    sys.exit(main())
