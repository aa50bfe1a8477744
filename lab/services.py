"""The fabric's static services in the lab: endpoints, kube-proxy's part, an external client.

In a cluster, kube-proxy (or its replacement) turns a Service address into a pod. The lab has
no kube-proxy, so it stands in for it with nftables rules on each node, written the way
kube-proxy's nftables mode writes them: a `nat` prerouting chain matching the service
address and port, a per-service chain choosing an endpoint with `numgen random mod N vmap`,
and a per-endpoint chain doing the `dnat`. Local services DNAT only to the node's own
endpoints (the client address is kept); Cluster services may DNAT to a pod on another node,
and then mark the packet for masquerade so the reply comes back through this node, as
kube-proxy does. Each endpoint pod runs `lab.echo`, answering with its name.

The external client is a namespace behind the spine (`<prefix>-svc-client`, 192.0.2.2/24 and
2001:db8:c0::2/64): the spine learns the service host routes from the ToR, and the ToRs get a
static route back to the client through the spine (standing in for the WAN's default route).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flatroute.fabric.model import Fabric
from flatroute.fabric.services import Addr, StaticService, TrafficPolicy
from flatroute.fabric.wiring import Role
from flatroute.plan import service_ledger
from lab import host
from lab.state import LabState, PodRecord, Proc
from lab.topology import Topology, ns_name

TABLE = "flatroute_lab_services"
MASQ_MARK = 0x4000
CLIENT = "svc-client"
CLIENT_V4, SPINE_V4 = "192.0.2.2", "192.0.2.1"
CLIENT_V6, SPINE_V6 = "2001:db8:c0::2", "2001:db8:c0::1"


@dataclass(frozen=True, slots=True)
class Target:
    """One service address and port, and the pods behind it."""

    service: str
    address: Addr
    port: int
    target_port: int
    policy: TrafficPolicy
    endpoints: tuple[str, ...]  # pod names


def targets(fabric: Fabric, allocations: Mapping[str, Sequence[Addr]]) -> list[Target]:
    out = []
    for s in fabric.services.static:
        addrs = [*allocations.get(s.key, ()), *s.external_ips]
        for a in addrs:
            for p in _ports(s):
                out.append(Target(s.key, a, p[0], p[1], s.policy, s.endpoints))
    return out


def _ports(s: StaticService) -> list[tuple[int, int]]:
    return [(p.port, p.target_port or p.port) for p in s.ports] or [(80, 80)]


def nft_script(node: str, ts: Sequence[Target], pods: Mapping[str, PodRecord]) -> str:
    """The node's whole table, replaced atomically (`nft -f`)."""
    pre: list[str] = []
    chains: list[str] = []
    for i, t in enumerate(ts):
        fam = "ip" if t.address.version == 4 else "ip6"
        eps = [e for e in t.endpoints if e in pods and (t.policy is TrafficPolicy.CLUSTER
                                                        or pods[e].node == node)]
        eps = [e for e in eps if (pods[e].ipv4 if fam == "ip" else pods[e].ipv6)]
        if not eps:
            continue
        pre.append(f"    {fam} daddr {t.address} tcp dport {t.port} jump svc-{i}")
        vmap = ", ".join(f"{j} : goto ep-{i}-{j}" for j in range(len(eps)))
        chains.append(f"  chain svc-{i} {{\n    numgen random mod {len(eps)} vmap {{ {vmap} }}"
                      "\n  }")
        for j, e in enumerate(eps):
            pod = pods[e]
            ip = pod.ipv4 if fam == "ip" else f"[{pod.ipv6}]"
            mark = (f"    meta mark set meta mark | {MASQ_MARK:#x}\n"
                    if pod.node != node else "")
            chains.append(f"  chain ep-{i}-{j} {{\n{mark}    meta l4proto tcp dnat {fam} to "
                          f"{ip}:{t.target_port}"
                          "\n  }")
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{",
             "  chain prerouting {", "    type nat hook prerouting priority dstnat; "
             "policy accept;", *pre, "  }",
             "  chain postrouting {", "    type nat hook postrouting priority srcnat; "
             "policy accept;", f"    meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade",
             "  }", *chains, "}"]
    return "\n".join(lines) + "\n"


# -- running it ----------------------------------------------------------------------------------
def current_targets(state: LabState, fabric: Fabric) -> list[Target]:
    held = service_ledger.load(state.dir / "state" / "services.json")
    return targets(fabric, {k: a.addresses for k, a in held.items()})


def sync(state: LabState, topo: Topology, fabric: Fabric) -> None:
    """kube-proxy's part on every node, from the fabric as it is now."""
    pods = {p.name: p for p in state.pods}
    ts = current_targets(state, fabric)
    for node in topo.nodes:
        host.run(host.in_ns(node.ns, ["nft", "-f", "-"]), input=nft_script(node.name, ts, pods))


def start(state: LabState, topo: Topology, fabric: Fabric) -> None:
    """Endpoint servers, kube-proxy's rules, the external client behind the spine."""
    pods = {p.name: p for p in state.pods}
    ports: dict[str, set[int]] = {}
    for t in current_targets(state, fabric):
        for e in t.endpoints:
            ports.setdefault(e, set()).add(t.target_port)
    for pod_name, pset in sorted(ports.items()):
        pod = pods.get(pod_name)
        if pod is None:
            continue
        log = state.dir / "logs" / f"{pod_name}.echo.log"
        cmd = [sys.executable, "-m", "lab.echo", "serve", pod_name, *map(str, sorted(pset))]
        state.processes.append(Proc(f"{pod_name}/echo", host.spawn(pod.ns, cmd, log), pod.ns,
                                    str(log)))
        state.save()
    sync(state, topo, fabric)
    _client(state, topo)


def client_ns(topo: Topology) -> str:
    return ns_name(topo.prefix, CLIENT)


def _client(state: LabState, topo: Topology) -> None:
    spine = next((r for r in topo.routers if r.role is Role.SPINE), None)
    if spine is None:
        return
    ns = client_ns(topo)
    state.namespaces.append(ns)
    state.save()
    host.netns_add([ns])
    host.ip_batch(None, [f"link add spine netns {ns} type veth peer name {CLIENT} netns "
                         f"{spine.ns}"])
    host.ip_batch(ns, ["link set lo up", "link set spine up", f"addr add {CLIENT_V4}/24 dev "
                       f"spine", f"addr add {CLIENT_V6}/64 dev spine nodad",
                       f"route add default via {SPINE_V4}", f"route add ::/0 via {SPINE_V6}"])
    host.ip_batch(spine.ns, [f"link set {CLIENT} up", f"addr add {SPINE_V4}/24 dev {CLIENT}",
                             f"addr add {SPINE_V6}/64 dev {CLIENT} nodad"])
    for link in topo.links:  # each ToR: back to the client through its spine
        for tor_ns, tor_if, far in ((link.a_ns, link.a_if, link.b), (link.b_ns, link.b_if,
                                                                     link.a)):
            if far != spine.name or not any(r.ns == tor_ns and r.role is Role.TOR
                                            for r in topo.routers):
                continue
            far_if = link.b_if if tor_ns == link.a_ns else link.a_if
            ll = _link_local(spine.ns, far_if)
            host.ip_batch(tor_ns, [f"route replace 192.0.2.0/24 via inet6 {ll} dev {tor_if}",
                                   f"route replace 2001:db8:c0::/64 via {ll} dev {tor_if}"])


def _link_local(ns: str, ifname: str) -> str:
    out = host.run(["ip", "-n", ns, "-6", "-o", "addr", "show", "dev", ifname, "scope",
                    "link"]).stdout.split()
    return out[out.index("inet6") + 1].split("/")[0]


def fib_paths(tor_ns: str, prefix: str) -> int:
    """How many next hops the ToR's kernel has for `prefix` (0: no route)."""
    fam = "-6" if ":" in prefix else "-4"
    out = host.run(["ip", "-n", tor_ns, fam, "route", "show", prefix], check=False).stdout
    if not out.strip():
        return 0
    return max(1, out.count("nexthop"))


def logs_dir(state: LabState) -> Path:
    return state.dir / "logs"
