"""What a lab is made of: the fabric's wiring (`flatroute.fabric.wiring`) in namespaces.

Namespaces are named `<prefix>-<fabric name of the thing>`; a link is a veth pair whose ends
carry the wiring's interface names (`naming.ifname(Y)` on X toward Y, unless X has a `ports:`
entry for Y), so what an operator reads in the fabric is what they find in the lab.
"""

from __future__ import annotations

from dataclasses import dataclass

from flatroute.errors import FlatrouteError
from flatroute.fabric.model import Fabric, Router
from flatroute.fabric.naming import SERVERS_INTERFACE
from flatroute.fabric.wiring import End, Role, WiredRouter, Wiring, wire
from flatroute.plan.model import Plan


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
    """The lab of `fabric`: its wiring (`fabric.wiring`) laid out in namespaces."""
    w = wire(fabric, plan)
    ns = {r.name: ns_name(prefix, r.name) for r in w.routers}
    ns.update({n.name: ns_name(prefix, n.name) for n in w.nodes})
    routers = [LabRouter(r.name, r.role, ns[r.name], r.router, r.site) for r in _lab_order(w)]
    links = [Link(lk.a.name, ns[lk.a.name], _linux(lk.a, lk.b.name), lk.b.name,
                  ns[lk.b.name], _linux(lk.b, lk.a.name),
                  None if lk.bridge is None else _linux_svi(lk.b.name, lk.bridge))
             for lk in w.links]
    bridges = [(ns[s.tor], _linux_svi(s.tor, s.ifname)) for s in w.servers]
    addresses = [Address(ns[s.tor], s.ifname, str(a)) for s in w.servers for a in s.addresses]
    addresses += [Address(ns[lk.a.name], lk.a.ifname, str(a)) for lk in w.links
                  for a in lk.a.addresses]
    nodes = [LabNode(n.name, ns[n.name], n.site, n.rack) for n in w.nodes]
    pods = [Pod(f"{n.name}-p{i}", n.name, ns_name(prefix, f"{n.name}-p{i}"),
                f"lab-{prefix}-{n.name}-p{i}") for n in w.nodes for i in range(pods_per_node)]
    return Topology(prefix, fabric.name, tuple(routers), tuple(nodes), tuple(links),
                    tuple(bridges), tuple(addresses), tuple(pods), w.mtu)


def _lab_order(w: Wiring) -> list[WiredRouter]:
    """WAN routers, then each site's spines and ToRs (the order namespaces are made in)."""
    sites = list(dict.fromkeys(r.site for r in w.routers if r.role is not Role.WAN))
    return ([r for r in w.routers if r.role is Role.WAN]
            + sorted((r for r in w.routers if r.role is not Role.WAN),
                     key=lambda r: (sites.index(r.site), r.role is Role.TOR)))


def _linux(end: End, neighbor: str) -> str:
    """A router end's interface name, refused when Linux cannot use it (a `ports:` entry)."""
    return end.ifname if end.role is Role.NODE else _linux_name(end.name, end.ifname, neighbor)


def _linux_svi(tor: str, name: str) -> str:
    return _linux_name(tor, name, SERVERS_INTERFACE)


def _linux_name(router: str, name: str, neighbor: str) -> str:
    if len(name) > 15 or not name or any(c in name for c in "/: ") or name in (".", ".."):
        raise LabTopologyError(f"router {router}: port {name!r} toward {neighbor} is "
                               "not a Linux interface name; the lab needs Linux names "
                               "(drop or rename that `ports:` entry for the lab)")
    return name
