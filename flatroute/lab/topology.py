"""What a lab is made of, computed purely from the fabric and its plan.

Namespaces are named `<prefix>-<fabric name of the thing>`; the interface on X toward Y is
`naming.ifname(Y)`, so what an operator reads in the fabric is what they find in the lab.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from flatroute.errors import FlatrouteError
from flatroute.fabric.model import Fabric, Router, Site
from flatroute.fabric.naming import SERVERS_INTERFACE, ifname
from flatroute.plan.model import NodePlan, Plan


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
    routers = _routers(fabric, prefix)
    wiring = _Wiring(prefix, {r.name: r for r in routers})
    for site in fabric.sites:
        wiring.site(site, fabric.wan_routers)
    for n in plan.nodes:
        wiring.node(n, pods_per_node)
    return Topology(prefix, fabric.name, tuple(routers), tuple(wiring.nodes),
                    tuple(wiring.links), tuple(wiring.bridges), tuple(wiring.addresses),
                    tuple(wiring.pods), fabric.srv6.underlay_mtu)


def _routers(fabric: Fabric, prefix: str) -> list[LabRouter]:
    """WAN routers, then each site's spines and ToRs."""
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
    return routers


def _port(router: Router, neighbor: str) -> str:
    """The router's interface toward `neighbor`: its `ports:` entry, else the rule."""
    name = router.port_for(neighbor, ifname(neighbor))
    if len(name) > 15 or not name or any(c in name for c in "/: ") or name in (".", ".."):
        raise LabTopologyError(f"router {router.name}: port {name!r} toward {neighbor} is "
                               "not a Linux interface name; the lab needs Linux names "
                               "(drop or rename that `ports:` entry for the lab)")
    return name


@dataclass
class _Wiring:
    """The links, bridges, addresses, nodes and pods of a lab, collected in fabric order."""

    prefix: str
    by_name: dict[str, LabRouter]
    links: list[Link] = field(default_factory=list)
    bridges: list[tuple[str, str]] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    nodes: list[LabNode] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)

    def wire(self, a: str, b: str) -> None:
        ra, rb = self.by_name[a], self.by_name[b]
        self.links.append(Link(a, ra.ns, _port(ra.router, b), b, rb.ns, _port(rb.router, a)))

    def site(self, site: Site, wan_routers: tuple[Router, ...]) -> None:
        """Each ToR to the site's spines (or, without spines, to the WAN), spines to the WAN."""
        for rack in site.racks:
            for tor in rack.tors:
                for sp in site.spines:
                    self.wire(tor.name, sp.name)
                if not site.spines:
                    for w in wan_routers:
                        self.wire(tor.name, w.name)
                self.servers_svi(tor)
        for sp in site.spines:
            for w in wan_routers:
                self.wire(sp.name, w.name)

    def servers_svi(self, tor: Router) -> None:
        """A numbered ToR's bridge toward its servers, with the peering addresses."""
        if tor.peering.unnumbered:
            return
        ns = ns_name(self.prefix, tor.name)
        svi = _port(tor, SERVERS_INTERFACE)
        self.bridges.append((ns, svi))
        for iface in (tor.peering.ipv4, tor.peering.ipv6):
            if iface is not None:
                self.addresses.append(Address(ns, svi, str(iface)))

    def node(self, n: NodePlan, pods_per_node: int) -> None:
        """A node's namespace, its links to its ToRs (on the SVI bridge when numbered), pods."""
        ns = ns_name(self.prefix, n.name)
        self.nodes.append(LabNode(n.name, ns, n.site, n.rack))
        for up in n.uplinks:
            lab_tor = self.by_name[up.tor]
            bridge = (None if lab_tor.router.peering.unnumbered
                      else _port(lab_tor.router, SERVERS_INTERFACE))
            self.links.append(Link(n.name, ns, ifname(up.tor), up.tor, lab_tor.ns,
                                   _port(lab_tor.router, n.name), bridge))
            for cidr in (up.ipv4, up.ipv6):
                if cidr is not None:
                    self.addresses.append(Address(ns, ifname(up.tor), str(cidr)))
        for i in range(pods_per_node):
            pod = f"{n.name}-p{i}"
            self.pods.append(Pod(pod, n.name, ns_name(self.prefix, pod),
                                 f"lab-{self.prefix}-{pod}"))
