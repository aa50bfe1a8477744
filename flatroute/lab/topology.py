"""What a lab is made of, computed purely from the fabric and its plan.

Namespaces are named `<prefix>-<fabric name of the thing>`; the interface on X toward Y is
`naming.ifname(Y)`, so what an operator reads in the fabric is what they find in the lab.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flatroute.errors import FlatrouteError
from flatroute.fabric.model import Fabric, Router
from flatroute.fabric.naming import SERVERS_INTERFACE, ifname
from flatroute.plan.model import Plan


class Role(StrEnum):
    TOR = "tor"
    SPINE = "spine"
    WAN = "wan"
    NODE = "node"
    POD = "pod"


@dataclass(frozen=True, slots=True)
class LabRouter:
    name: str
    role: Role
    ns: str
    router: Router
    site: str | None


@dataclass(frozen=True, slots=True)
class LabNode:
    name: str
    ns: str
    site: str
    rack: str


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair: `a_if` in `a_ns` faces `b`, `b_if` in `b_ns` faces `a`."""

    a: str
    a_ns: str
    a_if: str
    b: str
    b_ns: str
    b_if: str
    bridge_b: str | None = None  # enslave b_if to this bridge (a ToR's server SVI)

    @property
    def name(self) -> str:
        return f"{self.a}~{self.b}"


@dataclass(frozen=True, slots=True)
class Address:
    ns: str
    ifname: str
    cidr: str


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    node: str
    ns: str
    container_id: str


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str
    fabric: str
    routers: tuple[LabRouter, ...]
    nodes: tuple[LabNode, ...]
    links: tuple[Link, ...]
    bridges: tuple[tuple[str, str], ...]  # (ns, bridge name)
    addresses: tuple[Address, ...]
    pods: tuple[Pod, ...]
    #: every link's MTU: the fabric's underlay MTU, so the lab carries what the fabric promises
    mtu: int = 1500

    def namespaces(self) -> list[str]:
        return ([r.ns for r in self.routers] + [n.ns for n in self.nodes]
                + [p.ns for p in self.pods])

    def ns_of(self, name: str) -> str | None:
        names = {r.name: r.ns for r in self.routers}
        names.update({n.name: n.ns for n in self.nodes})
        names.update({p.name: p.ns for p in self.pods})
        return names.get(name)

    def link(self, name: str) -> Link | None:
        for link in self.links:
            if name in (link.name, f"{link.b}~{link.a}"):
                return link
        return None


class LabTopologyError(FlatrouteError):
    """The fabric cannot be emulated as it stands (e.g. a port name Linux cannot use)."""


def ns_name(prefix: str, thing: str) -> str:
    return f"{prefix}-{thing}"


def build(fabric: Fabric, plan: Plan, prefix: str, pods_per_node: int) -> Topology:
    routers: list[LabRouter] = []
    for w in fabric.wan_routers:
        routers.append(LabRouter(w.name, Role.WAN, ns_name(prefix, w.name), w, None))
    for site in fabric.sites:
        for sp in site.spines:
            routers.append(LabRouter(sp.name, Role.SPINE, ns_name(prefix, sp.name), sp,
                                     site.name))
        for rack in site.racks:
            for tor in rack.tors:
                routers.append(LabRouter(tor.name, Role.TOR, ns_name(prefix, tor.name), tor,
                                         site.name))
    by_name = {r.name: r for r in routers}
    links: list[Link] = []
    bridges: list[tuple[str, str]] = []
    addresses: list[Address] = []

    def port(router: Router, neighbor: str) -> str:
        """The router's interface toward `neighbor`: its `ports:` entry, else the rule."""
        name = router.port_for(neighbor, ifname(neighbor))
        if len(name) > 15 or not name or any(c in name for c in "/: ") or name in (".", ".."):
            raise LabTopologyError(f"router {router.name}: port {name!r} toward {neighbor} is "
                                   "not a Linux interface name; the lab needs Linux names "
                                   "(drop or rename that `ports:` entry for the lab)")
        return name

    def wire(a: str, b: str) -> None:
        ra, rb = by_name[a], by_name[b]
        links.append(Link(a, ra.ns, port(ra.router, b), b, rb.ns, port(rb.router, a)))

    for site in fabric.sites:
        for rack in site.racks:
            for tor in rack.tors:
                for sp in site.spines:
                    wire(tor.name, sp.name)
                if not site.spines:
                    for w in fabric.wan_routers:
                        wire(tor.name, w.name)
                ns = ns_name(prefix, tor.name)
                if not tor.peering.unnumbered:
                    svi = port(tor, SERVERS_INTERFACE)
                    bridges.append((ns, svi))
                    for iface in (tor.peering.ipv4, tor.peering.ipv6):
                        if iface is not None:
                            addresses.append(Address(ns, svi, str(iface)))
        for sp in site.spines:
            for w in fabric.wan_routers:
                wire(sp.name, w.name)
    nodes: list[LabNode] = []
    pods: list[Pod] = []
    for n in plan.nodes:
        ns = ns_name(prefix, n.name)
        nodes.append(LabNode(n.name, ns, n.site, n.rack))
        for up in n.uplinks:
            lab_tor = by_name[up.tor]
            bridge = (None if lab_tor.router.peering.unnumbered
                      else port(lab_tor.router, SERVERS_INTERFACE))
            links.append(Link(n.name, ns, ifname(up.tor), up.tor, lab_tor.ns,
                              port(lab_tor.router, n.name), bridge))
            for cidr in (up.ipv4, up.ipv6):
                if cidr is not None:
                    addresses.append(Address(ns, ifname(up.tor), str(cidr)))
        for i in range(pods_per_node):
            pod = f"{n.name}-p{i}"
            pods.append(Pod(pod, n.name, ns_name(prefix, pod), f"lab-{prefix}-{pod}"))
    return Topology(prefix, fabric.name, tuple(routers), tuple(nodes), tuple(links),
                    tuple(bridges), tuple(addresses), tuple(pods), fabric.srv6.underlay_mtu)
