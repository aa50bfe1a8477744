"""What one router must be told, platform-neutral: built from the fabric and its plan.

Every platform renderer reads a `RouterView` and nothing else, so the five templates cannot
disagree about *what* a router does, only about how its platform spells it.

Roles and sessions (who meets whom, and on which interface, is the fabric's wiring,
`flatroute.fabric.wiring`; this module adds the sessions and policies):
- ToR: one session per node session of the plan (the node's side is `PeerPlan`), plus
  unnumbered IPv6 link-local sessions over its router links: to every spine of its site, or to
  every WAN router when the site has no spines.
- spine: unnumbered sessions to every ToR of its site and to every WAN router.
- WAN router: unnumbered sessions to the site border routers (spines, or ToRs without spines);
  IPv6 unicast only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from flatroute import __version__
from flatroute.fabric.model import BgpOptions, Fabric, Router, Site
from flatroute.fabric.naming import SERVERS_INTERFACE
from flatroute.fabric.wiring import Role, WiredRouter, wire
from flatroute.plan.model import Behavior, Family, Plan, Prefix, sid_of
from render import services

#: racks with more nodes than this get a peer group (shared settings, per-node ASN and filters)
PEER_GROUP_THRESHOLD = 8
#: ECMP width asked of every platform
MAX_PATHS = 64
#: the placeholder written instead of the MD5 secret without --with-secrets
MD5_PLACEHOLDER = "FLATROUTE-MD5-PLACEHOLDER"

# Policy names, shared by every platform (upper case, no spaces: valid everywhere).
DEFAULT_V4 = "FR-DEFAULT-V4"
DEFAULT_V6 = "FR-DEFAULT-V6"
SITE_V4 = "FR-SITE-V4"  # the site's pod blocks (and, v6, its node locators): ToR -> spine
SITE_V6 = "FR-SITE-V6"
FABRIC_V6 = "FR-FABRIC-V6"  # SITE_V6 plus every other locator: spine -> ToR
TO_WAN = "FR-TO-WAN-V6"  # this site's locator block and node locators
FROM_WAN = "FR-FROM-WAN-V6"  # other sites' locators and the WAN routers' locators
ALL_LOCATORS = "FR-LOCATORS-V6"  # WAN router export
FROM_NODES = "FR-FROM-NODES"  # route map setting the fabric's communities
NODES_GROUP = "FR-NODES"  # peer group for big racks
BFD_PROFILE = "flatroute"

#: a router link's sessions by (this router's role, the neighbour's role): families, import and
#: export policies (IPv4, IPv6) and the group; a WAN router's links are per site (`_wan_link`)
_LINK_POLICIES: dict[tuple[Role, Role], tuple[tuple[Family, ...], str | None, str | None,
                                              str | None, str | None, str]] = {
    (Role.TOR, Role.SPINE): ((Family.IPV4, Family.IPV6), SITE_V4, SITE_V4, FABRIC_V6, SITE_V6,
                             "FR-SPINES"),
    (Role.SPINE, Role.TOR): ((Family.IPV4, Family.IPV6), SITE_V4, SITE_V4, SITE_V6, FABRIC_V6,
                             "FR-TORS"),
    (Role.TOR, Role.WAN): ((Family.IPV6,), None, None, FROM_WAN, TO_WAN, "FR-WAN"),
    (Role.SPINE, Role.WAN): ((Family.IPV6,), None, None, FROM_WAN, TO_WAN, "FR-WAN"),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One prefix-list entry: permit `prefix` with lengths from `ge` to `le` (None: exact)."""

    prefix: Prefix
    ge: int | None = None
    le: int | None = None


@dataclass(frozen=True, slots=True)
class PrefixList:
    name: str
    version: int  # 4 or 6
    rules: tuple[Rule, ...]


#: policy names stay within the shortest limit of the platforms (NX-OS, EOS: 63 characters)
MAX_POLICY_NAME = 63


def node_list_name(node: str, version: int) -> str:
    """`FR-NODE-<NODE>-V4`; long node names are shortened deterministically (hash suffix)."""
    base = node.upper()
    if len(base) > MAX_POLICY_NAME - len("FR-NODE--V4"):
        digest = hashlib.sha256(node.encode()).hexdigest()[:8].upper()
        base = f"{base[:40]}-{digest}"
    return f"FR-NODE-{base}-V{version}"


def site_list_name(site: str) -> str:
    return f"FR-FROM-{site.upper()}-V6"


@dataclass(frozen=True, slots=True)
class NodeSession:
    """The ToR's side of one node session."""

    node: str
    asn: int
    address: IPv4Address | IPv6Address | None  # None: unnumbered on `interface`
    interface: str | None
    families: tuple[Family, ...]
    extended_nexthop: bool  # IPv4 routes over this IPv6 session (RFC 8950)
    accept_v4: str | None  # prefix-list names
    accept_v6: str | None
    #: BFD on this session: the node's speaker runs it exactly when this is set (the plan's)
    bfd: bool = False

    @property
    def group(self) -> str:
        """The peer group of this session in a big rack: one per kind of session."""
        if self.families == (Family.IPV4,):
            return f"{NODES_GROUP}-V4"
        if self.families == (Family.IPV6,):
            return f"{NODES_GROUP}-V6"
        return NODES_GROUP

    @property
    def peer(self) -> str:
        """How the platform names the neighbour: its address, or the interface."""
        return str(self.address) if self.address is not None else str(self.interface)


@dataclass(frozen=True, slots=True)
class Link:
    """An unnumbered (IPv6 link-local) session to another router."""

    neighbor: str
    role: Role
    interface: str
    asn: int
    families: tuple[Family, ...]
    import_v4: str | None
    export_v4: str | None
    import_v6: str | None
    export_v6: str | None
    #: links with the same policies share this group name (platforms that group peers)
    group: str = ""
    #: BFD on this link: both ends run BFD (`Fabric.bfd_on`)
    bfd: bool = False


@dataclass(frozen=True, slots=True)
class RouterView:
    fabric: str
    source: str
    version: str
    router: Router
    role: Role
    path: str  # field path of the router in the fabric, for errors
    site: str | None
    rack: str | None
    bgp: BgpOptions
    sessions: tuple[NodeSession, ...]
    links: tuple[Link, ...]
    prefix_lists: tuple[PrefixList, ...]
    aggregates: tuple[IPv6Network, ...]  # announced (with their contributors) toward the WAN
    networks: tuple[IPv6Network, ...]  # originated: the router's own locator
    end_sid: IPv6Address | None
    #: format usid-f3216: the router's uSID locator block:ID::/48 (its uN SID: block:ID::)
    usid_locator: IPv6Network | None
    md5: str | None  # the secret, the placeholder, or None when the fabric asks for no MD5
    md5_is_secret: bool
    must_supply: tuple[str, ...]
    servers_v4: IPv4Interface | None
    servers_v6: IPv6Interface | None
    servers_interface: str

    @property
    def peer_group(self) -> bool:
        return len({s.node for s in self.sessions}) > PEER_GROUP_THRESHOLD

    def lists(self, version: int) -> tuple[PrefixList, ...]:
        return tuple(p for p in self.prefix_lists if p.version == version)

    @property
    def communities(self) -> tuple[str, ...]:
        return self.bgp.communities

    @property
    def node_bfd(self) -> bool:
        """The node sessions run BFD (all or none of them: BFD is chosen per ToR)."""
        return any(s.bfd for s in self.sessions)

    @property
    def uses_bfd(self) -> bool:
        """Some session of this router runs BFD (with the fabric's timers)."""
        return any(s.bfd for s in self.sessions) or any(lk.bfd for lk in self.links)


def _pool_rule(pool: Prefix, size: int) -> Rule:
    if size <= pool.prefixlen:
        return Rule(pool)
    return Rule(pool, size, size)


def _locator_rules(block: IPv6Network | None, length: int) -> list[Rule]:
    if block is None:
        return []
    return [Rule(block), Rule(block, length, length)]


def build_views(fabric: Fabric, plan: Plan, secret: str | None) -> list[RouterView]:
    """One view per router of the fabric (ToRs, spines, WAN routers), in a stable order."""
    return _Builder(fabric, plan, secret).views()


class _Builder:
    def __init__(self, fabric: Fabric, plan: Plan, secret: str | None) -> None:
        self.f = fabric
        self.p = plan
        self.secret = secret
        self.loc_len = fabric.srv6.locator_length
        self.wan_locators = [w.locator for w in fabric.wan_routers if w.locator is not None]
        #: uSID format: each uSID router's locator (block:ID::/48), from the plan
        self.usid_locators = {r.name: r.locator for r in plan.routers}
        if fabric.srv6.usid:
            self.wan_locators = [self.usid_locators[w.name] for w in fabric.wan_routers
                                 if w.name in self.usid_locators]
        self.w = wire(fabric, plan)

    def views(self) -> list[RouterView]:
        """Site by site its ToRs and spines, then the WAN routers (the wiring's order)."""
        build = {Role.TOR: self._tor, Role.SPINE: self._spine, Role.WAN: self._wan}
        return [build[r.role](r) for r in self.w.routers]

    # -- policies -----------------------------------------------------------------------------
    def _site_locators(self, site: Site) -> list[Rule]:
        """The site's locator block (node locators inside it) and its routers' own locators.
        uSID: exactly the /48 of each node and uSID router of the site (a fabric-wide block is
        shared by every site, so no site may claim all of it)."""
        if self.f.srv6.usid:
            return self._site_usid_locators(site)
        rules = _locator_rules(site.locator_block, self.loc_len)
        routers = [*site.spines, *(t for rack in site.racks for t in rack.tors)]
        return rules + [Rule(r.locator) for r in routers if r.locator is not None]

    def _site_usid_locators(self, site: Site) -> list[Rule]:
        names = {r.name for r in site.spines} | {t.name for rk in site.racks for t in rk.tors}
        nodes = [n.locator for n in self.p.nodes if n.site == site.name and n.locator]
        routers = [loc for name, loc in sorted(self.usid_locators.items()) if name in names]
        return [Rule(x) for x in (*nodes, *routers)]

    def _aggregate(self, site: Site) -> IPv6Network | None:
        """The locator block a site's edge announces toward the WAN: its own, never one the
        sites share (uSID's fabric-wide block)."""
        return site.locator_block

    def _site_lists(self, site_name: str) -> list[PrefixList]:
        f = self.f
        site = f.site(site_name)
        v4 = [_pool_rule(p, f.pods.ipv4_block_size) for p in site.ipv4_pools]
        v6 = [_pool_rule(p, f.pods.ipv6_block_size) for p in site.ipv6_pools]
        v6 += self._site_locators(site)
        v4 += [Rule(*e) for e in services.site_rules(f, site_name, 4)]
        v6 += [Rule(*e) for e in services.site_rules(f, site_name, 6)]
        fabric6 = list(v6)
        for other in f.sites:
            if other.name != site_name:
                fabric6 += self._site_locators(other)
        fabric6 += [Rule(w) for w in self.wan_locators]
        return [PrefixList(SITE_V4, 4, tuple(v4)), PrefixList(SITE_V6, 6, tuple(v6)),
                PrefixList(FABRIC_V6, 6, tuple(fabric6))]

    def _wan_lists(self, site_name: str) -> list[PrefixList]:
        f = self.f
        site = f.site(site_name)
        to_wan = self._site_locators(site)
        if len(self.wan_locators) > 1:
            # The WAN routers meet only through the sites' edges: each learns the others'
            # locators there, for paths through several WAN waypoints.
            to_wan += [Rule(w) for w in self.wan_locators]
        from_wan: list[Rule] = []
        for other in f.sites:
            if other.name != site_name:
                from_wan += self._site_locators(other)
        from_wan += [Rule(w) for w in self.wan_locators]
        return [PrefixList(TO_WAN, 6, tuple(to_wan)), PrefixList(FROM_WAN, 6, tuple(from_wan))]

    def _links(self, me: WiredRouter) -> list[Link]:
        """The sessions over the router's links to other routers, in the wiring's order."""
        out: list[Link] = []
        mine = self.f.bfd_on(me.name)
        for lk in self.w.router_links(me.name):
            far = self.w.router(lk.far(me.name).name)
            iface = lk.near(me.name).ifname
            bfd = mine and self.f.bfd_on(far.name)
            # links whose BFD differs from the fabric's choice get groups of their own
            split = "" if bfd == self.f.bgp.bfd.enabled else ("-BFD" if bfd else "-NOBFD")
            if me.role is Role.WAN:
                site = str(far.site)
                out.append(Link(far.name, far.role, iface, far.router.asn, (Family.IPV6,),
                                None, None, site_list_name(site), ALL_LOCATORS,
                                f"FR-SITE-{site.upper()}{split}", bfd))
                continue
            fams, i4, e4, i6, e6, group = _LINK_POLICIES[(me.role, far.role)]
            out.append(Link(far.name, far.role, iface, far.router.asn, fams, i4, e4, i6, e6,
                            group + split, bfd))
        return out

    # -- routers ------------------------------------------------------------------------------
    def _tor(self, me: WiredRouter) -> RouterView:
        f = self.f
        tor, site_name = me.router, str(me.site)
        site = f.site(site_name)
        sessions: list[NodeSession] = []
        lists: list[PrefixList] = [
            PrefixList(DEFAULT_V4, 4, (Rule(IPv4Network("0.0.0.0/0")),)),
            PrefixList(DEFAULT_V6, 6, (Rule(IPv6Network("::/0")),)),
        ]
        for node in self.p.nodes:
            peers = [pp for pp in node.peers if pp.tor == tor.name]
            if not peers:
                continue
            # One list per family the node has a session for; an empty one denies everything
            # (a node with an IPv4 session but no IPv4 block may announce nothing on it).
            fams = {f for pp in peers for f in pp.families}
            acc4 = acc6 = None
            if Family.IPV4 in fams:
                acc4 = node_list_name(node.name, 4)
                svc4 = [Rule(*e) for e in services.node_rules(f, node.name, 4)]
                lists.append(PrefixList(acc4, 4, (*(Rule(b) for b in node.ipv4_blocks),
                                                  *svc4)))
            v6 = [*node.ipv6_blocks, *([node.locator] if node.locator else [])]
            if Family.IPV6 in fams:
                acc6 = node_list_name(node.name, 6)
                svc6 = [Rule(*e) for e in services.node_rules(f, node.name, 6)]
                lists.append(PrefixList(acc6, 6, (*(Rule(b) for b in v6), *svc6)))
            for pp in peers:
                unnumbered = pp.address is None
                iface = self.w.port(tor.name, node.name) if unnumbered else None
                ext = unnumbered or (Family.IPV4 in pp.families and pp.local_address is not None
                                     and pp.local_address.version == 6)
                sessions.append(NodeSession(
                    node.name, node.asn or 0, pp.local_address, iface, pp.families, ext,
                    acc4 if Family.IPV4 in pp.families else None,
                    acc6 if Family.IPV6 in pp.families else None, pp.bfd))
        if site.spines:
            lists += self._site_lists(site_name)
        elif f.wan_routers:
            lists += self._wan_lists(site_name)
        aggregates = (self._aggregate(site),) if (
            f.wan_routers and not site.spines) else ()
        mine = {s.node for s in sessions}
        view = self._view(me, sessions, lists, aggregates)
        sized = services.max_prefixes(f, (n for n in self.p.nodes if n.name in mine))
        if sized == view.bgp.max_prefixes:
            return view
        return dataclasses.replace(view, bgp=dataclasses.replace(view.bgp, max_prefixes=sized))

    def _spine(self, me: WiredRouter) -> RouterView:
        f = self.f
        site = f.site(str(me.site))
        lists = self._site_lists(site.name)
        if f.wan_routers:
            lists += self._wan_lists(site.name)
        aggregates = (self._aggregate(site),) if f.wan_routers else ()
        return self._view(me, [], lists, aggregates)

    def _wan(self, me: WiredRouter) -> RouterView:
        all_rules: list[Rule] = []
        lists: list[PrefixList] = []
        # with several WAN routers, each learns the others' locators through the sites'
        # edges (see _wan_lists)
        others = [Rule(w) for w in self.wan_locators] if len(self.wan_locators) > 1 else []
        for site in self.f.sites:
            rules = self._site_locators(site)
            all_rules += rules
            lists.append(PrefixList(site_list_name(site.name), 6, tuple(rules + others)))
        all_rules += [Rule(w) for w in self.wan_locators]
        lists.append(PrefixList(ALL_LOCATORS, 6, tuple(all_rules)))
        return self._view(me, [], lists, ())

    def _view(self, me: WiredRouter, sessions: list[NodeSession], lists: list[PrefixList],
              aggregates: tuple[IPv6Network | None, ...]) -> RouterView:
        f = self.f
        router, role = me.router, me.role
        links = self._links(me)
        must: list[str] = []
        md5: str | None = None
        md5_secret = False
        if f.bgp.md5 is not None and sessions:
            if self.secret is not None:
                md5, md5_secret = self.secret, True
            else:
                md5 = MD5_PLACEHOLDER
                must.append(f"the BGP MD5 secret ({f.bgp.md5.describe()}): replace "
                            f"{MD5_PLACEHOLDER}, or render with --with-secrets")
        servers = me.servers_ifname
        if role is Role.TOR and not router.peering.unnumbered:
            addrs = " and ".join(str(a) for a in (router.peering.ipv4, router.peering.ipv6) if a)
            hint = "" if servers != SERVERS_INTERFACE else (
                " (give its real name with `ports: {servers: NAME}` in the fabric)")
            must.append(f"the server-facing interface {servers!r} (SVI, the VLAN of the "
                        f"rack's servers) carrying {addrs}{hint}")
        names = sorted({lk.interface for lk in links} | {
            s.interface for s in sessions if s.interface})
        if names:
            must.append("IPv6 enabled (link-local, router advertisements) on the links "
                        + ", ".join(names) + (" (add `ports:` to this router in the fabric "
                                              "to use the real port names)" if not
                                              router.ports else ""))
        end_sid = None
        networks: tuple[IPv6Network, ...] = ()
        usid = self.usid_locators.get(router.name)
        if usid is not None:
            networks = (usid,)
            must.append(f"the SRv6 uN SID {usid.network_address} of uSID locator {usid} "
                        "(F3216: block, node ID)")
        elif router.locator is not None:
            networks = (router.locator,)
            end_sid = sid_of(router.locator, Behavior.END)
            must.append(f"the SRv6 End SID {end_sid} of locator {router.locator} "
                        "(not expressible in BGP configuration: see the companion "
                        ".srv6.sh file for Linux-based routers)")
        return RouterView(
            fabric=f.name, source=f.source, version=__version__, router=router, role=role,
            path=me.path, site=me.site, rack=me.rack, bgp=f.bgp, sessions=tuple(sessions),
            links=tuple(links), prefix_lists=tuple(lists),
            aggregates=tuple(a for a in aggregates if a is not None), networks=networks,
            end_sid=end_sid, usid_locator=usid, md5=md5, md5_is_secret=md5_secret,
            must_supply=tuple(must),
            servers_v4=router.peering.ipv4 if role is Role.TOR else None,
            servers_v6=router.peering.ipv6 if role is Role.TOR else None,
            servers_interface=servers,
        )
