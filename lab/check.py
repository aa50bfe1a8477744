"""`flatroute lab test`: every BGP session Established, every pod reaching every pod over IPv4
and IPv6, and, for pods in different sites, proof from a capture on the WAN router that the
packets crossed the WAN as SRv6 (IPv6 outer header with an SRH, or IPv4/IPv6-in-IPv6 for
encap.red with one SID) and that the WAN router holds no IPv4 pod route. In a uSID fabric,
each waypoint router's capture must show the packets arriving with the destination address
the plan's hop-by-hop walk says (one uSID shifted off per hop), without an SRH where the path
fits one container."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flatroute.fabric.wiring import Role
from lab import frr, host
from lab.state import LabState, PodRecord
from lab.topology import Topology

Say = Callable[[str], None]
_Capture = tuple[subprocess.Popen[bytes], Path, str]
_Results = dict[tuple[str, str, int], bool]  # (source pod, destination pod, family) -> reached

_INNER = re.compile(r"IP6? (?P<src>[0-9a-f.:]+) > (?P<dst>[0-9a-f.:]+): ICMP6?,? echo request")


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(what)
        return ok


def sessions(topo: Topology, lab: Path, report: Report, say: Say) -> None:
    say("BGP sessions (seen from the routers' FRR):")
    for r in topo.routers:
        peers = frr.bgp_summary(lab / "routers" / r.name)
        report.check(bool(peers), f"{r.name}: FRR reports no BGP peers")
        for peer, info in sorted(peers.items()):
            ok = report.check(info["state"] == "Established",
                              f"{r.name} -> {peer}: {info['state']}")
            name = info.get("hostname") or ""
            say(f"  {'ok  ' if ok else 'FAIL'} {r.name:<14} {peer:<28} {name:<12} "
                f"{info['state']}")


def probe_from(pod: PodRecord, targets: list[str]) -> dict[str, float | None]:
    if not targets:
        return {}
    cmd = host.in_ns(pod.ns, [sys.executable, "-m", "lab.probe", *targets])
    out = host.run(cmd, check=False, timeout=60).stdout
    try:
        result: dict[str, float | None] = json.loads(out)
    except ValueError:
        return dict.fromkeys(targets)
    return result


def _captures(topo: Topology, lab: Path) -> list[_Capture]:
    caps = []
    for r in topo.routers:
        if r.role is not Role.WAN:
            continue
        pcap = lab / "captures" / f"{r.name}.pcap"
        pcap.parent.mkdir(parents=True, exist_ok=True)
        # --immediate-mode: without it libpcap hands packets over a block at a time, and
        # the last second of the test would be missing from the capture.
        cmd = ["tcpdump", "-i", "any", "-nn", "-U", "--immediate-mode", "-s", "256", "-w",
               str(pcap), "ip or ip6"]
        proc = subprocess.Popen(host.in_ns(r.ns, cmd),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        caps.append((proc, pcap, r.name))
    if caps:
        # tcpdump says "listening on" once its socket is open; wait for it.
        deadline = time.monotonic() + 5
        for proc, _, _ in caps:
            assert proc.stderr is not None
            while time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line or b"listening" in line:
                    break
    return caps


def _srv6_pairs(pcap: Path) -> tuple[set[tuple[str, str]], int]:
    """(inner src, inner dst) of ICMP echo requests seen inside SRv6; count of bare IPv4."""
    out = host.run(["tcpdump", "-r", str(pcap), "-nn", "ip6 and (ip6[6] == 43 or "
                    "ip6[6] == 4 or ip6[6] == 41)"], check=False).stdout
    pairs = set()
    for line in out.splitlines():
        if "srcrt" not in line and " IP " not in line and "IP6 " not in line.split(">", 1)[-1]:
            continue
        for m in _INNER.finditer(line):
            pairs.add((m["src"], m["dst"]))
    bare = host.run(["tcpdump", "-r", str(pcap), "-nn", "ip"], check=False).stdout
    return pairs, len([ln for ln in bare.splitlines() if ln.strip()])


def matrix(state: LabState, topo: Topology, report: Report, say: Say) -> None:
    pods = sorted(state.pods, key=lambda p: p.name)
    multi_site = len({n.site for n in topo.nodes}) > 1 and any(
        r.role is Role.WAN for r in topo.routers)
    caps = _captures(topo, state.dir) if multi_site else []
    try:
        results = _probe_all(pods)
    finally:
        _stop_captures(caps)
    _say_matrix(pods, results, say)
    for (s, d, fam), ok in sorted(results.items()):
        report.check(ok, f"ping IPv{fam} {s} -> {d}")
    if caps:
        _check_wan(topo, pods, caps, results, report, say)
        _check_usid_hops(state, caps, report, say)


def _check_usid_hops(state: LabState, caps: list[_Capture], report: Report, say: Say) -> None:
    from lab.srv6 import waypoint_arrivals
    from lab.view import lab_plan

    arrivals = waypoint_arrivals(lab_plan(state))
    if not arrivals:
        return
    say("")
    say("uSID paths on the waypoints (destination addresses captured there):")
    pcaps = {name: pcap for _, pcap, name in caps}
    for router, seen in sorted(arrivals.items()):
        pcap = pcaps.get(router)
        if pcap is None:
            report.check(False, f"{router}: a uSID waypoint without a capture")
            continue
        for da, srh in sorted(seen):
            n = _count(pcap, f"ip6 dst {da}")
            with_srh = _count(pcap, f"ip6 dst {da} and ip6[6] == 43")
            say(f"  {router}: {n} packets to {da}, {with_srh} with an SRH")
            report.check(n > 0, f"{router}: no packet arrived for {da}")
            report.check(srh or with_srh == 0, f"{router}: {with_srh} packets to {da} carry "
                         "an SRH, though the path fits one container")


def _count(pcap: Path, expr: str) -> int:
    out = host.run(["tcpdump", "-r", str(pcap), "-nn", expr], check=False).stdout
    return len([ln for ln in out.splitlines() if ln.strip()])


def _probe_all(pods: list[PodRecord]) -> _Results:
    """Every pod pings every other pod's addresses."""
    results: _Results = {}
    for src in pods:
        targets = [a for dst in pods if dst is not src
                   for a in (dst.ipv4, dst.ipv6) if a]
        got = probe_from(src, targets)
        for dst in pods:
            if dst is src:
                continue
            for fam, addr in ((4, dst.ipv4), (6, dst.ipv6)):
                if addr:
                    results[(src.name, dst.name, fam)] = got.get(addr) is not None
    return results


def _stop_captures(caps: list[_Capture]) -> None:
    time.sleep(0.2)
    for proc, _, _ in caps:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _say_matrix(pods: list[PodRecord], results: _Results, say: Say) -> None:
    say("")
    say("Pod connectivity (4 = IPv4, 6 = IPv6, - = failed):")
    width = max((len(p.name) for p in pods), default=4)
    say(" " * (width + 2) + " ".join(f"{i:>3}" for i in range(len(pods))))
    for i, src in enumerate(pods):
        cells = []
        for dst in pods:
            if dst is src:
                cells.append("  .")
                continue
            mark = "".join(str(f) if results.get((src.name, dst.name, f)) else "-"
                           for f in (4, 6) if (src.ipv4 if f == 4 else src.ipv6))
            cells.append(f"{mark:>3}")
        say(f"{src.name:<{width}} {i:>1} " + " ".join(cells) if len(pods) < 10 else
            f"{src.name:<{width}} " + " ".join(cells))


def _check_wan(topo: Topology, pods: list[PodRecord], caps: list[_Capture], results: _Results,
               report: Report, say: Say) -> None:
    """Cross-site flows crossed the WAN as SRv6, and the WAN routers hold no IPv4 route."""
    site_of = {n.name: n.site for n in topo.nodes}
    seen: set[tuple[str, str]] = set()
    bare_v4 = 0
    for _, pcap, _ in caps:
        pairs, bare = _srv6_pairs(pcap)
        seen |= pairs
        bare_v4 += bare
    say("")
    say("Cross-site traffic on the WAN (captured on the WAN routers):")
    by_name = {p.name: p for p in pods}
    cross = 0
    for (s, d, fam), ok in sorted(results.items()):
        if site_of[by_name[s].node] == site_of[by_name[d].node] or not ok:
            continue
        src, dst = by_name[s], by_name[d]
        pair = (src.ipv4, dst.ipv4) if fam == 4 else (src.ipv6, dst.ipv6)
        cross += 1
        report.check(pair in seen, f"IPv{fam} {s} -> {d} not seen as SRv6 on the WAN")
    say(f"  {cross} cross-site flows checked; {len(seen)} distinct inner flows seen inside "
        f"SRv6; {bare_v4} plain IPv4 packets on the WAN")
    report.check(bare_v4 == 0, f"{bare_v4} plain IPv4 packets crossed the IPv6-only WAN")
    for r in topo.routers:
        if r.role is Role.WAN:
            v4 = host.run(host.in_ns(r.ns, ["ip", "-4", "route", "show"]), check=False).stdout
            pod_routes = [ln for ln in v4.splitlines() if ln.strip()]
            report.check(not pod_routes, f"{r.name} holds IPv4 routes: {pod_routes[:3]}")
            say(f"  {r.name}: {len(pod_routes)} IPv4 routes in its kernel")


def run_tests(state: LabState, topo: Topology, say: Say) -> Report:
    report = Report()
    sessions(topo, state.dir, report, say)
    matrix(state, topo, report, say)
    from lab import service_check

    service_check.run(state, topo, report.check, say)
    if report.failures:
        say("")
        say("Failures:")
        for f in report.failures[:50]:
            say(f"  {f}")
    say("")
    say(f"{report.passed} passed, {report.failed} failed")
    return report
