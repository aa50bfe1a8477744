"""The lab's routers' SRv6 endpoints: which datapath they run, and their End SID or uN.

The routers run what their rendered `.srv6.sh` companion would (the FRR platform's), on the
datapath chosen as the speakers choose theirs: the kernel where the capability probe finds
the behaviour working (a uN needs End with the NEXT-C-SID flavour), else the eBPF datapath
(`flatroute speaker end-sid`, what the script itself falls back to).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from flatroute.fabric.model import Fabric
from flatroute.fabric.wiring import Role
from flatroute.plan.model import Behavior, Plan, Segment, sid_of
from flatroute.plan.usid import Hop, LocalUsid, walk
from flatroute.plan.usid import text as usid_text
from lab import host
from lab.state import LabError, LabState
from lab.topology import LabRouter, Topology

Say = Callable[[str], None]


def router_behaviors(fabric: Fabric) -> tuple[str, ...]:
    """What the routers' SIDs are: uN in a uSID fabric, End otherwise."""
    return ("uN",) if fabric.srv6.usid else ("End",)


def router_datapath(state: LabState, fabric: Fabric, say: Say) -> str | None:
    """The lab's bpffs (the eBPF datapath pins there: `ip netns exec` hides /sys/fs/bpf), and
    the datapath for the routers' SIDs, chosen as the speakers choose theirs."""
    if not fabric.srv6.enabled:
        return None
    from speaker.bpf.datapath import ensure_bpffs
    from speaker.capabilities import DatapathUnavailable, choose_datapath, probe, why_not_kernel

    # The lab's own bpffs, mounted in the host's mount namespace so that every `ip netns exec`
    # child sees it (/sys/fs/bpf is hidden there by the sysfs remount).
    bpffs = state.dir / "bpf"
    state.bpffs = str(bpffs)
    state.save()
    ensure_bpffs(str(bpffs))
    caps = probe()
    behaviors = router_behaviors(fabric)
    try:
        chosen = choose_datapath(fabric.srv6.datapath, caps, behaviors)
    except DatapathUnavailable as exc:
        raise LabError(f"spec.srv6.datapath {fabric.srv6.datapath}: {exc}") from exc
    why = why_not_kernel(caps, behaviors)
    say(f"      SRv6 datapath of the routers' {'/'.join(behaviors)} "
        f"({fabric.srv6.datapath}): {chosen}" + (f" (not the kernel: {why})" if why else ""))
    return chosen


def router_sid(state: LabState, r: LabRouter, fabric: Fabric, the_plan: Plan, script: str,
               datapath: str | None) -> None:
    """Install router `r`'s End SID (or uN) as its rendered script would, on `datapath`."""
    router = fabric.routers()[r.name]
    usid = next((x.locator for x in the_plan.routers if x.name == r.name), None)
    if usid is None and router.locator is None:
        return
    rdir = state.dir / "routers" / r.name
    (rdir / "srv6.sh").write_text(script)
    if datapath == "bpf":
        from speaker.endsid import program_end_sid

        if usid is not None:
            program_end_sid(str(Path(state.bpffs) / r.name), str(usid.network_address),
                            str(usid), netns=r.ns, behavior="uN")
        else:
            assert router.locator is not None
            sid = sid_of(router.locator, Behavior.END)
            program_end_sid(str(Path(state.bpffs) / r.name), str(sid), str(router.locator),
                            netns=r.ns)
        host.sysctl(r.ns, {"net.ipv6.conf.all.forwarding": "1"})
    else:
        host.run(host.in_ns(r.ns, ["sh", str(rdir / "srv6.sh")]))
    state.router_datapaths[r.name] = datapath or "kernel"
    state.save()


# -- what the uSID paths look like on the wire ----------------------------------------------------
def usid_table(the_plan: Plan) -> list[LocalUsid]:
    """Every node's and uSID router's uSID, as the datapaths match them."""
    out = [LocalUsid(IPv6Network((int(s.sid), s.length)), n.name, s.behavior)
           for n in the_plan.nodes for s in n.sids if s.length < 128]
    out += [LocalUsid(IPv6Network((int(s.sid), s.length)), r.name, s.behavior)
            for r in the_plan.routers for s in r.sids]
    return out


def usid_paths(the_plan: Plan) -> list[tuple[str, Segment, list[Hop]]]:
    """(site, segment, its hops) of every uSID path of the plan that names waypoints."""
    table = usid_table(the_plan)
    return [(site.name, seg, walk(seg.segments, table)) for site in the_plan.sites
            for seg in site.segments if seg.usids and seg.policy]


def waypoint_arrivals(the_plan: Plan) -> dict[str, set[tuple[IPv6Address, bool]]]:
    """Per uSID router on a path: (the destination address its packets arrive with, whether
    they carry an SRH), for every policy path through it."""
    routers = {r.name for r in the_plan.routers}
    out: dict[str, set[tuple[IPv6Address, bool]]] = {}
    for _, seg, hops in usid_paths(the_plan):
        for h in hops:
            if h.owner in routers:
                out.setdefault(h.owner, set()).add((h.destination, len(seg.segments) > 1))
    return out


def path_lines(the_plan: Plan) -> list[str]:
    """The lab status' SRV6 PATHS: each path's uSIDs, its containers, and its hops."""
    lines = []
    for site, seg, hops in usid_paths(the_plan):
        lines.append(f"  from {site} to {seg.prefix} ({seg.policy}): "
                     + " > ".join(usid_text(u) for u in seg.usids))
        lines.append("    containers " + ", ".join(str(c) for c in seg.segments)
                     + ("" if len(seg.segments) > 1 else " (no SRH)"))
        lines.append("    hops " + ", ".join(f"{h.owner} {h.behavior.value} {h.destination}"
                                             for h in hops))
    return lines


def wait_paths(topo: Topology, the_plan: Plan, directory: Path, timeout: float = 30) -> None:
    """Every WAN router has every node's locator and the other WAN routers' in its RIB (with
    several WAN routers those go round through the sites' edges), and every node its IPv6
    default route: else the first cross-site packets of `lab test` meet a half-built path."""
    import json
    import time

    wans = [r for r in topo.routers if r.role is Role.WAN]
    locators = {r.name: r.router.locator for r in wans if r.router.locator is not None}
    locators.update({r.name: r.locator for r in the_plan.routers})
    nodes = [str(n.locator) for n in the_plan.nodes if n.locator is not None]
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    while time.monotonic() < deadline:
        missing = []
        for r in wans:
            out = host.run(["vtysh", "--vty_socket", str(directory / "routers" / r.name),
                            "-c", "show bgp ipv6 unicast json"], check=False).stdout
            try:
                have = set(json.loads(out or "{}").get("routes", {}))
            except ValueError:
                have = set()
            want = nodes + [str(loc) for name, loc in locators.items() if name != r.name]
            missing += [f"{p} on {r.name}" for p in want if p not in have]
        for n in topo.nodes:
            default = host.run(host.in_ns(n.ns, ["ip", "-6", "route", "show", "default"]),
                               check=False).stdout
            if the_plan.node(n.name).ipv6_blocks and "default" not in default:
                missing.append(f"the IPv6 default route of {n.name}")
        if not missing:
            return
        time.sleep(0.3)
    raise LabError("SRv6 paths did not converge: missing " + ", ".join(missing[:8]))
