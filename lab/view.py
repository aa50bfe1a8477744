"""Reading a running lab: its topology, a summary, status, exec and failure injection."""

from __future__ import annotations

from pathlib import Path

from flatroute import CNI_ROUTE_PROTOCOL
from flatroute.errors import FlatrouteError
from flatroute.fabric import load_fabric
from flatroute.fabric.wiring import Role
from flatroute.plan import Plan, load_ledger, plan
from flatroute.speaker_status import StatusError
from flatroute.speaker_status import read as read_status
from lab import frr, host
from lab.srv6 import path_lines
from lab.state import LabState
from lab.topology import Topology, build


def lab_plan(state: LabState) -> Plan:
    """The plan the lab runs: its fabric, with the ledger its controller keeps."""
    fabric = load_fabric(state.fabric_copy)
    return plan(fabric, load_ledger(Path(state.directory) / "state" / "ledger.json"))


def topology(state: LabState) -> Topology:
    fabric = load_fabric(state.fabric_copy)
    the_plan = plan(fabric, load_ledger(Path(state.directory) / "state" / "ledger.json"))
    return build(fabric, the_plan, state.prefix, state.pods_per_node)


def summary(state: LabState) -> list[str]:
    topo = topology(state)
    routers = ", ".join(f"{r.name} ({r.role.value})" for r in topo.routers)
    lines = [f"lab {state.prefix!r} from {state.fabric_source}",
             f"  routers (FRR): {routers}",
             f"  nodes (speaker + ExaBGP): {', '.join(n.name for n in topo.nodes)}",
             f"  controller: static mode, state in {state.directory}/state",
             f"  pods: {len(state.pods)}"]
    for p in state.pods:
        lines.append(f"    {p.name:<16} on {p.node:<10} {p.ipv4 or '-':<16} {p.ipv6 or '-'}")
    lines.append(f"  processes: {len(state.processes)}, logs in {state.directory}/logs")
    return lines


def status(state: LabState) -> list[str]:
    topo = topology(state)
    lab = Path(state.directory)
    lines = ["ROUTERS"]
    for r in topo.routers:
        peers = frr.bgp_summary(lab / "routers" / r.name)
        up = sum(1 for p in peers.values() if p["state"] == "Established")
        dp = state.router_datapaths.get(r.name)
        end = "uN" if r.router.usid else "End"
        lines.append(f"  {r.name:<14} {r.role.value:<6} sessions {up}/{len(peers)} established"
                     + (f"  SRv6 {end} on the {dp} datapath" if dp else ""))
        for peer, info in sorted(peers.items()):
            fams = " ".join(f"{k}:{v}" for k, v in sorted(info["families"].items()))
            lines.append(f"    {peer:<28} {info.get('hostname') or '':<12} "
                         f"{info['state']:<12} received {fams}")
    paths = path_lines(lab_plan(state))
    if paths:
        lines.append("SRV6 PATHS")
        lines += paths
    lines.append("NODES")
    for n in topo.nodes:
        lines.append(f"  {n.name} ({n.site}/{n.rack})")
        try:
            st = read_status(str(lab / "state" / "status" / f"{n.name}.json"))
            lines.append(f"    speaker applied generation {st.generation} at "
                         f"{st.applied_at}"
                         + (f"; SRv6 datapath {st.datapath}" if st.datapath else ""))
            if st.bpf:
                ents = st.bpf.get("entries") or {}
                drops = {k: v for k, v in (st.bpf.get("counters") or {}).items()
                         if k in ("no_sid", "sl_mismatch", "too_big", "fib_fail")}
                lines.append("    eBPF: " + ", ".join(f"{k} {v}" for k, v in
                                                      sorted(ents.items()))
                             + f"; {len(st.bpf.get('attached') or {})} interfaces; drops "
                             + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
        except StatusError:
            lines.append("    speaker status: not reported yet")
        routes = host.run(host.in_ns(n.ns, ["ip", "-6", "route", "show", "proto", "70"]),
                          check=False).stdout.splitlines()
        routes4 = host.run(host.in_ns(n.ns, ["ip", "route", "show", "proto", "70"]),
                           check=False).stdout.splitlines()
        pods4 = host.run(host.in_ns(n.ns, ["ip", "route", "show", "proto",
                                           str(CNI_ROUTE_PROTOCOL)]), check=False).stdout
        pods6 = host.run(host.in_ns(n.ns, ["ip", "-6", "route", "show", "proto",
                                           str(CNI_ROUTE_PROTOCOL)]), check=False).stdout
        sids = [ln for ln in routes if "seg6local" in ln]
        encaps = [ln for ln in routes4 + routes if "encap seg6 " in ln]
        lines.append(f"    kernel: {len(routes4) + len(routes)} speaker routes, "
                     f"{len(sids)} SIDs, {len(encaps)} SRv6 encap routes, "
                     f"{len((pods4 + pods6).splitlines())} pod routes of the CNI plugin")
        for ln in sids:
            lines.append(f"      {ln.strip()}")
    if state.kubernetes and state.api_url:
        lines += _nodestates(state.api_url)
    lines += _services(topo, lab)
    lines.append("PODS")
    for p in state.pods:
        lines.append(f"  {p.name:<16} on {p.node:<10} {p.ipv4 or '-':<16} {p.ipv6 or '-'}")
    return lines


def _services(topo: Topology, lab: Path) -> list[str]:
    """Which node announces which service, and why (from the speakers' status)."""
    rows: list[str] = []
    for n in topo.nodes:
        try:
            st = read_status(str(lab / "state" / "status" / f"{n.name}.json"))
        except StatusError:
            continue
        for sv in st.services:
            sent = "announced" if sv.get("announcedTo") else "NOT announced"
            rows.append(f"  {sv.get('prefix')!s:<22} {sv.get('service')!s:<18} {n.name:<10} "
                        f"{sent:<13} {sv.get('reason')}")
    return ["SERVICES (prefix, service, node, state, why)", *sorted(rows)] if rows else []


def exec_argv(state: LabState, name: str, cmd: list[str]) -> list[str]:
    topo = topology(state)
    ns = topo.ns_of(name)
    if ns is None:
        names = ([r.name for r in topo.routers] + [n.name for n in topo.nodes]
                 + [p.name for p in state.pods])
        raise FlatrouteError(f"no lab router, node or pod named {name!r} "
                             f"(known: {', '.join(names)})")
    if not cmd:
        cmd = ["bash"]
    router = next((r for r in topo.routers if r.name == name), None)
    if router is not None and cmd[0] == "vtysh" and "--vty_socket" not in cmd:
        cmd = ["vtysh", "--vty_socket", str(Path(state.directory) / "routers" / name), *cmd[1:]]
    return ["ip", "netns", "exec", ns, *cmd]


def set_target(state: LabState, target: str, *, up: bool) -> list[str]:
    topo = topology(state)
    word = "up" if up else "down"
    ends: list[tuple[str, str]] = []
    link = topo.link(target)
    if link is not None:
        ends = [(link.a_ns, link.a_if), (link.b_ns, link.b_if)]
    else:
        kind = next((r.role for r in topo.routers if r.name == target), None)
        if kind is None and any(n.name == target for n in topo.nodes):
            kind = Role.NODE
        if kind is None:
            raise FlatrouteError(f"{target!r} is no lab link (A~B), node or router")
        for lk in topo.links:
            if target in (lk.a, lk.b):
                ends += [(lk.a_ns, lk.a_if), (lk.b_ns, lk.b_if)]
    for ns, ifname in ends:
        host.run(["ip", "-n", ns, "link", "set", ifname, word])
    key = target
    if up and key in state.failed:
        state.failed.remove(key)
    elif not up and key not in state.failed:
        state.failed.append(key)
    state.save()
    return [f"{target}: {len(ends) // 2} link(s) set {word}"]




def _nodestates(url: str) -> list[str]:
    """What `kubectl get nodestates` shows: every node's BGP state, seen off the node."""
    from kube.api import KubeError, connect
    from kube.objects import NODESTATES

    try:
        items, _rv = connect(None, url).list(NODESTATES)
    except KubeError as exc:
        return [f"NODESTATES (Kubernetes API {url}): unreachable: {exc}"]
    lines = [f"NODESTATES (Kubernetes API {url}, the fake)",
             f"  {'NAME':<10} {'ASN':<11} {'SESSIONS':<9} {'ANNOUNCED':<10} {'APPLIED':<8} "
             "LAST ERROR"]
    for obj in sorted(items, key=lambda o: str(o["metadata"]["name"])):
        st = obj.get("status") or {}
        applied = st.get("observedGeneration") == obj["metadata"].get("generation")
        lines.append(f"  {obj['metadata']['name']:<10} {obj['spec'].get('asn', '-')!s:<11} "
                     f"{st.get('sessionsUp', '-'):<9} {st.get('announcedCount', '-')!s:<10} "
                     f"{'yes' if applied else 'no':<8} {st.get('lastError') or '-'}")
    return lines
