"""The fabric's wiring, derived once: router roles, every link and the addresses on its ends.

The lab (`lab.topology`), the router views (`render.view`) and the Vagrant
lab (`render.vagrant`) all read a `Wiring`; none of them works out by itself which
router meets which, what an interface is called or where an address goes.

The shape:
- each ToR links to every spine of its site, or, in a site without spines, to every WAN router;
  each spine links to every WAN router (IPv6 link-local, no addresses);
- each node links to each ToR of its plan's uplinks: a `SERVER` link when the ToR is numbered
  (the ToR end joins the ToR's server subnet, its SVI, which holds the ToR's addresses), an
  `UNNUMBERED` one when it is not; the node end carries the plan's uplink addresses;
- the interface on X toward Y is X's `ports:` entry for Y, else `naming.ifname(Y)`; the ToR's
  SVI is its `ports:` entry for `servers`, else `servers`;
- every link's MTU is the fabric's `srv6.underlayMtu`.

`flatroute.fabric` sits below `flatroute.plan` in the import contract, so the plan is read
through two Protocols (`PlannedNode`, `PlannedUplink`) that `NodePlan` and `UplinkPlan` meet.
Pure: no I/O, frozen values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Interface, IPv6Interface
from typing import Protocol

from flatroute.fabric.model import Fabric, Router
from flatroute.fabric.naming import SERVERS_INTERFACE, ifname

Cidr = IPv4Interface | IPv6Interface


class Role(StrEnum):
    """What a box of the fabric is; the one role enum of the lab and the renderers."""

    TOR = "tor"
    SPINE = "spine"
    WAN = "wan"
    NODE = "node"


class LinkKind(StrEnum):
    SERVER = "server"  # node - numbered ToR, on the ToR's server subnet (SVI)
    UNNUMBERED = "unnumbered"  # node - unnumbered ToR, IPv6 link-local only
    TOR_SPINE = "tor-spine"
    TOR_WAN = "tor-wan"  # a site without spines: its ToRs are its border routers
    SPINE_WAN = "spine-wan"


#: the router-to-router kinds (the node kinds are SERVER and UNNUMBERED)
ROUTER_LINKS = frozenset({LinkKind.TOR_SPINE, LinkKind.TOR_WAN, LinkKind.SPINE_WAN})


class PlannedUplink(Protocol):
    """What the wiring reads of a node's uplink in the plan (`plan.model.UplinkPlan`)."""

    @property
    def tor(self) -> str: ...
    @property
    def ipv4(self) -> IPv4Interface | None: ...
    @property
    def ipv6(self) -> IPv6Interface | None: ...


class PlannedNode(Protocol):
    """What the wiring reads of a node in the plan (`plan.model.NodePlan`)."""

    @property
    def name(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def rack(self) -> str: ...
    @property
    def uplinks(self) -> Sequence[PlannedUplink]: ...


class PlannedFabric(Protocol):
    """What the wiring reads of a plan (`plan.model.Plan`): its nodes, in plan order."""

    @property
    def nodes(self) -> Sequence[PlannedNode]: ...


@dataclass(frozen=True, slots=True)
class WiredRouter:
    name: str
    role: Role
    router: Router
    site: str | None  # None for WAN routers
    rack: str | None  # ToRs only
    path: str  # the router's field path in the fabric, for messages

    @property
    def servers_ifname(self) -> str:
        """The router's server-facing interface (a ToR's SVI): `ports: {servers: ...}`."""
        return self.router.port_for(SERVERS_INTERFACE, SERVERS_INTERFACE)


@dataclass(frozen=True, slots=True)
class WiredNode:
    name: str
    site: str
    rack: str


@dataclass(frozen=True, slots=True)
class End:
    """One end of a link: the router or node there, and its interface toward the other end."""

    name: str
    role: Role
    ifname: str
    addresses: tuple[Cidr, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    """A cable: `a` is the lower tier (node, ToR, spine), `b` the upper (ToR, spine, WAN)."""

    kind: LinkKind
    a: End
    b: End
    mtu: int
    #: SERVER links: the ToR's SVI that the ToR end (`b`) belongs to
    bridge: str | None = None

    @property
    def name(self) -> str:
        return f"{self.a.name}~{self.b.name}"

    def near(self, name: str) -> End:
        """The end at `name`."""
        return self.a if self.a.name == name else self.b

    def far(self, name: str) -> End:
        """The end facing `name`."""
        return self.b if self.a.name == name else self.a


@dataclass(frozen=True, slots=True)
class ServerSubnet:
    """A numbered ToR's SVI toward its rack's servers and the ToR's addresses on it."""

    tor: str
    ifname: str
    ipv4: IPv4Interface | None
    ipv6: IPv6Interface | None

    @property
    def addresses(self) -> tuple[Cidr, ...]:
        return tuple(a for a in (self.ipv4, self.ipv6) if a is not None)


@dataclass(frozen=True, slots=True)
class Wiring:
    fabric: str
    mtu: int
    #: site by site, each site's ToRs rack by rack, then its spines; then the WAN routers
    routers: tuple[WiredRouter, ...]
    #: in plan order
    nodes: tuple[WiredNode, ...]
    #: router links site by site (each ToR's, in rack order, then each spine's to the WAN),
    #: then each node's links in plan order, uplink by uplink
    links: tuple[Link, ...]
    #: the numbered ToRs' server subnets, in router order
    servers: tuple[ServerSubnet, ...]
    _by_name: dict[str, WiredRouter] = field(default_factory=dict, compare=False, repr=False)
    _by_end: dict[str, tuple[Link, ...]] = field(default_factory=dict, compare=False,
                                                 repr=False)

    def router(self, name: str) -> WiredRouter:
        return self._by_name[name]

    def links_of(self, name: str) -> tuple[Link, ...]:
        """Every link with an end at `name`, in link order."""
        return self._by_end.get(name, ())

    def router_links(self, name: str) -> tuple[Link, ...]:
        """The router-to-router links of `name`, in link order."""
        return tuple(lk for lk in self.links_of(name) if lk.kind in ROUTER_LINKS)

    def port(self, name: str, neighbor: str) -> str:
        """The interface on `name` toward `neighbor` (KeyError when they share no link)."""
        for lk in self.links_of(name):
            if lk.far(name).name == neighbor:
                return lk.near(name).ifname
        raise KeyError(f"{name}~{neighbor}")


def wire(fabric: Fabric, plan: PlannedFabric) -> Wiring:
    """The wiring of `fabric` with the nodes (and their uplinks) of its plan."""
    routers = _routers(fabric)
    by_name = {r.name: r for r in routers}
    mtu = fabric.srv6.underlay_mtu
    links = _router_links(fabric, by_name, mtu)
    nodes: list[WiredNode] = []
    for n in plan.nodes:
        nodes.append(WiredNode(n.name, n.site, n.rack))
        links += [_node_link(n, up, by_name[up.tor], mtu) for up in n.uplinks]
    servers = tuple(ServerSubnet(r.name, r.servers_ifname, r.router.peering.ipv4,
                                 r.router.peering.ipv6)
                    for r in routers if r.role is Role.TOR and not r.router.peering.unnumbered)
    by_end: dict[str, list[Link]] = {}
    for lk in links:
        by_end.setdefault(lk.a.name, []).append(lk)
        by_end.setdefault(lk.b.name, []).append(lk)
    return Wiring(fabric.name, mtu, tuple(routers), tuple(nodes), tuple(links), servers,
                  by_name, {k: tuple(v) for k, v in by_end.items()})


def _routers(fabric: Fabric) -> list[WiredRouter]:
    out: list[WiredRouter] = []
    for si, site in enumerate(fabric.sites):
        for ri, rack in enumerate(site.racks):
            out += [WiredRouter(t.name, Role.TOR, t, site.name, rack.name,
                                f"spec.sites[{si}].racks[{ri}].tors[{ti}]")
                    for ti, t in enumerate(rack.tors)]
        out += [WiredRouter(sp.name, Role.SPINE, sp, site.name, None,
                            f"spec.sites[{si}].spines[{pi}]")
                for pi, sp in enumerate(site.spines)]
    out += [WiredRouter(w.name, Role.WAN, w, None, None, f"spec.wan.routers[{wi}]")
            for wi, w in enumerate(fabric.wan_routers)]
    return out


def _router_links(fabric: Fabric, by_name: dict[str, WiredRouter], mtu: int) -> list[Link]:
    """Each ToR to its site's spines (or, without spines, to the WAN), each spine to the WAN."""
    def cable(kind: LinkKind, a: Router, b: Router) -> Link:
        ra, rb = by_name[a.name], by_name[b.name]
        return Link(kind, End(a.name, ra.role, a.port_for(b.name, ifname(b.name))),
                    End(b.name, rb.role, b.port_for(a.name, ifname(a.name))), mtu)

    links: list[Link] = []
    for site in fabric.sites:
        for rack in site.racks:
            for tor in rack.tors:
                links += [cable(LinkKind.TOR_SPINE, tor, sp) for sp in site.spines]
                if not site.spines:
                    links += [cable(LinkKind.TOR_WAN, tor, w) for w in fabric.wan_routers]
        for sp in site.spines:
            links += [cable(LinkKind.SPINE_WAN, sp, w) for w in fabric.wan_routers]
    return links


def _node_link(node: PlannedNode, up: PlannedUplink, tor: WiredRouter, mtu: int) -> Link:
    """A node's uplink: on the ToR's SVI when the ToR is numbered, else unnumbered."""
    addresses = tuple(a for a in (up.ipv4, up.ipv6) if a is not None)
    near = End(node.name, Role.NODE, ifname(up.tor), addresses)
    far = End(tor.name, Role.TOR, tor.router.port_for(node.name, ifname(node.name)))
    if tor.router.peering.unnumbered:
        return Link(LinkKind.UNNUMBERED, near, far, mtu)
    return Link(LinkKind.SERVER, near, far, mtu, tor.servers_ifname)
