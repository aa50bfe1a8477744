"""The planner: fabric + ledger (+ the previous plan) -> Plan. Pure and deterministic.

Nodes are planned in name order. Allocations already in the ledger are claimed first, so a
node keeps its ASN, blocks, locator and uplink addresses for life; new nodes take the first
free ones. Nodes that left the fabric keep their allocations (marked retired) until the caller
expires them after a grace period (`flatroute.plan.ledger.expire`).

Re-planning reuses the previous plan's NodePlan for every node whose inputs did not change, so
the work of a re-plan follows the size of the change.
"""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import cast

from flatroute.errors import InvalidInput, field_error
from flatroute.fabric.model import (
    AsnMode,
    Fabric,
    Node,
    NodeRole,
    Rack,
    Router,
    SegmentScope,
    Site,
)
from flatroute.plan.alloc import (
    BlockPool,
    HostPool,
    NumberPool,
    addr_text,
    address,
    parse_addr,
    parse_net,
)
from flatroute.plan.model import (
    FUNCTION,
    Behavior,
    BgpSettings,
    Family,
    Ledger,
    LedgerEntry,
    NodePlan,
    PeerPlan,
    Plan,
    Prefix,
    Problem,
    Segment,
    Sid,
    SitePlan,
    Srv6Settings,
    UplinkPlan,
)

RETIRED_UNKNOWN = "1970-01-01T00:00:00+00:00"
_NO_ENTRY = LedgerEntry()
# Address families of a BGP session, shared by every peer (not built per peer)
_V4 = (Family.IPV4,)
_V6 = (Family.IPV6,)
_V4_V6 = (Family.IPV4, Family.IPV6)


def plan(
    fabric: Fabric,
    ledger: Ledger | None = None,
    previous: Plan | None = None,
    now: str | None = None,
) -> Plan:
    """Compute the whole plan. `now` (ISO 8601) stamps nodes that just left the fabric.

    Pure: callers that plan at scale pause the cyclic collector around it (flatroute.gcpause).
    """
    return _Planner(fabric, ledger or Ledger(), previous, now or RETIRED_UNKNOWN).run()


class _Planner:
    def __init__(self, fabric: Fabric, ledger: Ledger, previous: Plan | None, now: str) -> None:
        self.f = fabric
        self.ledger = ledger
        self.previous = previous
        self.now = now
        self.racks: dict[str, Rack] = fabric.racks()
        self.sites: dict[str, Site] = {s.name: s for s in fabric.sites}
        self.problems: list[Problem] = []
        self._tor_ip_cache: dict[str, tuple[IPv4Address | None, IPv6Address | None]] = {}
        self._rack_tors: dict[str, dict[str, Router]] = {}
        self._rack_keys: dict[str, tuple[object, ...]] = {}
        # The SIDs of a node's locator: (behaviour, function) for a node that only forwards
        # and for one that decapsulates; the same for every node.
        d4, d6 = self._decap_behaviors()
        end = ((Behavior.END, FUNCTION[Behavior.END]),)
        self._sids_end = end
        self._sids_decap = end + (((d4, FUNCTION[d4]),) if d4 == d6
                                  else ((d4, FUNCTION[d4]), (d6, FUNCTION[d6])))
        self.routers = fabric.routers()
        router_asns = {r.asn for r in self.routers.values()}
        self.v4: dict[str, BlockPool] = {}
        self.v6: dict[str, BlockPool] = {}
        self.loc: dict[str, BlockPool] = {}
        for s in fabric.sites:
            self.v4[s.name] = BlockPool(s.ipv4_pools, fabric.pods.ipv4_block_size)
            self.v6[s.name] = BlockPool(s.ipv6_pools, fabric.pods.ipv6_block_size)
            loc_pools = (s.locator_block,) if s.locator_block else ()
            # Locator 0 of each site block stays free for site-level (anycast) use.
            self.loc[s.name] = BlockPool(loc_pools, fabric.srv6.locator_length, skip_first=1)
        scheme = fabric.asn
        self.asns = NumberPool(scheme.range_start, scheme.range_end, router_asns)
        self.hosts: dict[tuple[str, int], HostPool] = {}
        for rack in self.racks.values():
            for tor in rack.tors:
                for subnet in (tor.peering.ipv4, tor.peering.ipv6):
                    if subnet is not None:
                        self.hosts[(tor.name, subnet.version)] = HostPool(
                            subnet.network, (int(subnet.ip),))

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> Plan:
        f = self.f
        nodes = sorted(f.nodes, key=lambda n: n.name)
        present = {n.name for n in nodes}
        self._claim_pins(nodes)
        entries: dict[str, LedgerEntry] = {}
        # Claim every allocation the ledger already holds, active or retired.
        for name in sorted(self.ledger.nodes):
            entry = self.ledger.nodes[name]
            entries[name] = self._claim_entry(name, entry)
        rack_asns = dict(self.ledger.racks)
        if f.asn.mode is AsnMode.PER_RACK:
            for asn in rack_asns.values():
                self.asns.claim(asn)
            for rack_name in sorted(self.racks):
                if rack_name not in rack_asns:
                    got = self.asns.allocate()
                    if got is None:
                        self.problems.append(Problem(rack_name, "ASN range exhausted "
                                                     "(spec.asn.range)"))
                    else:
                        rack_asns[rack_name] = got
        self.rack_asns = rack_asns
        plans: list[NodePlan] = []
        memo: dict[str, tuple[object, NodePlan]] = {}
        prev_memo = self.previous.memo if self.previous else {}
        for node in nodes:
            entry = entries.get(node.name, _NO_ENTRY)
            cached = prev_memo.get(node.name)
            if cached is not None and self._unchanged(cached[0], node, entry):
                plans.append(cached[1])
                memo[node.name] = cached
                continue
            problems_before = len(self.problems)
            entry = self._allocate(node, entry)
            entries[node.name] = entry
            node_plan = self._node_plan(node, entry)
            plans.append(node_plan)
            if len(self.problems) == problems_before:
                # A node planned with a problem (exhaustion...) is planned again next time:
                # so its problem stays reported, and it gets what it lacks once there is room.
                memo[node.name] = (self._key(node, entry), node_plan)
        for name, entry in list(entries.items()):
            if name not in present and entry.retired_at is None:
                entries[name] = _replace(entry, retired_at=self.now)
            elif name in present and entry.retired_at is not None:
                entries[name] = _replace(entry, retired_at=None)
        ledger = Ledger(dict(sorted(entries.items())), dict(sorted(rack_asns.items())))
        sites = self._site_plans(plans)
        bgp = f.bgp
        return Plan(
            fabric=f.name,
            mtu=f.pods.mtu,
            bgp=BgpSettings(bgp.hold_time, bgp.keepalive, bgp.graceful_restart, bgp.md5,
                            bgp.communities, bgp.bfd.enabled, bgp.bfd.min_rx_ms,
                            bgp.bfd.min_tx_ms, bgp.bfd.multiplier),
            srv6=Srv6Settings(f.srv6.enabled, f.srv6.encap_mode),
            nodes=tuple(plans),
            sites=sites,
            ledger=ledger,
            problems=tuple(self.problems),
            memo=memo,
        )

    def _key(self, node: Node, entry: LedgerEntry) -> tuple[Node, tuple[object, ...],
                                                            LedgerEntry]:
        """Everything a node's plan depends on: the node, its ledger entry, and its rack's
        key (the rack, its site and the fabric-wide settings)."""
        return (node, self._rack_key(node.rack), entry)

    def _rack_key(self, rack_name: str) -> tuple[object, ...]:
        # One tuple per rack, shared by the keys of the rack's nodes (see _unchanged).
        key = self._rack_keys.get(rack_name)
        if key is None:
            f = self.f
            rack = self.racks[rack_name]
            site = self.sites[rack.site]
            key = (rack, site.name, site.ipv4_pools, site.ipv6_pools, site.locator_block,
                   f.asn, f.pods, f.bgp.ipv4_over_ipv6, f.srv6.enabled, f.srv6.scope,
                   f.srv6.decap_ipv4, f.srv6.decap_ipv6, f.srv6.locator_length,
                   f.srv6.datapath, self.rack_asns.get(rack_name))
            self._rack_keys[rack_name] = key
        return key

    def _unchanged(self, before: object, node: Node, entry: LedgerEntry) -> bool:
        """Whether a node's key equals the one its previous plan was made with."""
        key = self._key(node, entry)
        if not (isinstance(before, tuple) and len(before) == len(key)):
            return False
        rack_key = key[1]
        if before[1] is not rack_key and before[1] == rack_key:
            # Equal: adopt the previous plan's tuple, so that the rack's other nodes compare
            # theirs by identity (comparing a rack, its ToRs and their subnets node by node
            # was a third of a re-plan at 5,000 nodes).
            self._rack_keys[node.rack] = rack_key = before[1]
        return (before[1] is rack_key and (before[0] is node or before[0] == node)
                and (before[2] is entry or before[2] == entry))

    # -- claiming what exists -------------------------------------------------------------------
    def _claim_pins(self, nodes: list[Node]) -> None:
        self.pinned_blocks: set[str] = set()
        for node in nodes:
            site = self.racks[node.rack].site
            for b4 in node.ipv4_blocks:
                self.v4[site].claim(b4)
                self.pinned_blocks.add(str(b4))
            for b6 in node.ipv6_blocks:
                self.v6[site].claim(b6)
                self.pinned_blocks.add(str(b6))
            if node.asn is not None:
                self.asns.claim(node.asn)
            for up in node.uplinks:
                for addr in (up.ipv4, up.ipv6):
                    if addr is not None and (up.tor, addr.version) in self.hosts:
                        self.hosts[(up.tor, addr.version)].claim(int(addr))
        self.pinned_nodes = {n.name: n for n in nodes}

    def _claim_entry(self, name: str, e: LedgerEntry) -> LedgerEntry:
        """Claim a ledger entry's allocations; drop the parts no pool can hold any more."""
        node = self.pinned_nodes.get(name)
        site = self.racks[node.rack].site if node else None
        keep4 = tuple([t for t in e.ipv4_blocks if self._keep_block(self.v4, t, site, node)])
        keep6 = tuple([t for t in e.ipv6_blocks if self._keep_block(self.v6, t, site, node)])
        locator = None
        if e.locator is not None:
            pool = self._pool_for(self.loc, e.locator, site)
            if pool is not None and pool.claim(parse_net(e.locator)):
                locator = e.locator
        asn = e.asn
        if asn is not None and self.f.asn.mode is AsnMode.PER_NODE:
            pinned_here = node is not None and node.asn == asn
            in_range = self.f.asn.range_start <= asn <= self.f.asn.range_end
            if not in_range or (not self.asns.claim(asn) and not pinned_here):
                asn = None
        else:
            asn = None
        uplinks: list[tuple[str, str | None, str | None]] = []
        dropped = 0
        for tor, v4, v6 in e.uplinks:
            k4 = v4 if v4 is None or self._keep_host(tor, v4, node) else None
            k6 = v6 if v6 is None or self._keep_host(tor, v6, node) else None
            dropped += (k4 is not v4) + (k6 is not v6)
            uplinks.append((tor, k4, k6))
        if (not dropped and asn == e.asn and locator == e.locator
                and len(keep4) == len(e.ipv4_blocks) and len(keep6) == len(e.ipv6_blocks)):
            # Everything kept: the entry itself, so that a re-plan with the previous plan finds
            # the very entry its memo holds and compares it by identity.
            return e
        return LedgerEntry(asn, keep4, keep6, locator, tuple(uplinks), e.retired_at)

    def _keep_host(self, tor: str, text: str, node: Node | None) -> bool:
        """Whether a ledger uplink address stays with its node: on the ToR's subnet, and not
        taken already unless this very node pins it (its pins are claimed already)."""
        addr = parse_addr(text)
        pool = self.hosts.get((tor, addr.version))
        if pool is None or not pool.holds(int(addr)):
            return False
        return pool.claim(int(addr)) or (node is not None and any(
            u.tor == tor and addr in (u.ipv4, u.ipv6) for u in node.uplinks))

    def _keep_block(self, pools: dict[str, BlockPool], text: str, site: str | None,
                    node: Node | None) -> bool:
        """Whether a ledger block stays with its node: inside the site's pools, not pinned by
        another node, and not already claimed (a pin of this very node is claimed already)."""
        pool = self._pool_for(pools, text, site)
        if pool is None:
            return False
        if _pins(node, text):
            return True
        return text not in self.pinned_blocks and pool.claim(parse_net(text))

    def _pool_for(self, pools: dict[str, BlockPool], text: str,
                  site: str | None) -> BlockPool | None:
        """The pool a ledger prefix belongs to: the node's own site's, else any site's."""
        try:
            net = parse_net(text)
        except ValueError:
            return None
        if site is not None:
            pool = pools[site]
            return pool if pool.contains(net) else None
        for pool in pools.values():
            if pool.contains(net):
                return pool
        return None

    # -- allocating what is missing -------------------------------------------------------------
    def _allocate(self, node: Node, e: LedgerEntry) -> LedgerEntry:
        f = self.f
        rack = self.racks[node.rack]
        site = self.sites[rack.site]
        b4 = tuple([str(b) for b in node.ipv4_blocks]) if node.ipv4_blocks else e.ipv4_blocks
        if not b4 and site.ipv4_pools:
            b4 = self._take(self.v4[site.name], node, "IPv4 pools of site {} are exhausted: "
                            "no pod block assigned", site.name)
        b6 = tuple([str(b) for b in node.ipv6_blocks]) if node.ipv6_blocks else e.ipv6_blocks
        if not b6 and site.ipv6_pools:
            b6 = self._take(self.v6[site.name], node, "IPv6 pools of site {} are exhausted: "
                            "no pod block assigned", site.name)
        locator = e.locator
        if f.srv6.enabled and locator is None and site.locator_block is not None:
            taken = self._take(self.loc[site.name], node, "locator block of site {} is "
                               "exhausted: no SRv6 locator assigned", site.name)
            locator = taken[0] if taken else None
        asn = e.asn
        if f.asn.mode is AsnMode.PER_NODE:
            if node.asn is not None:
                asn = node.asn
            elif asn is None:
                asn = self.asns.allocate()
                if asn is None:
                    self.problems.append(Problem(node.name, "ASN range spec.asn.range is "
                                                 "exhausted"))
        uplinks = self._uplinks(node, rack, e)
        return LedgerEntry(asn, b4, b6, locator, uplinks, None)

    def _take(self, pool: BlockPool, node: Node, exhausted: str,
              site: str) -> tuple[str, ...]:
        """One block from the pool as ledger text, or () with the problem reported (the
        message is formatted only then: this runs for every block of a cold plan)."""
        got = pool.allocate_text()
        if got is None:
            self.problems.append(Problem(node.name, exhausted.format(site)))
            return ()
        return (got,)

    def _uplinks(self, node: Node, rack: Rack,
                 e: LedgerEntry) -> tuple[tuple[str, str | None, str | None], ...]:
        given = {u.tor: u for u in node.uplinks} if node.uplinks else {}
        before = {t: (v4, v6) for t, v4, v6 in e.uplinks} if e.uplinks else {}
        out: list[tuple[str, str | None, str | None]] = []
        for tor in rack.tors:
            if given and tor.name not in given:
                continue  # single-homed on purpose
            peering = tor.peering
            if peering.unnumbered:
                out.append((tor.name, None, None))
                continue
            up = given.get(tor.name)
            prev4, prev6 = before.get(tor.name, (None, None))
            v4 = self._host(node, tor, peering.ipv4, up.ipv4 if up else None, prev4)
            v6 = self._host(node, tor, peering.ipv6, up.ipv6 if up else None, prev6)
            out.append((tor.name, v4, v6))
        return tuple(out)

    def _host(self, node: Node, tor: Router, subnet: IPv4Interface | IPv6Interface | None,
              pinned: IPv4Address | IPv6Address | None, prev: str | None) -> str | None:
        """A node's address on one of a ToR's subnets: its pin, else what the ledger holds,
        else the subnet's first free address."""
        if subnet is None:
            return None
        if pinned is not None:
            return str(pinned)
        if prev is not None:
            return prev
        got = self.hosts[(tor.name, subnet.version)].allocate()
        if got is None:
            self.problems.append(Problem(node.name, f"peering subnet of {tor.name} "
                                         f"{subnet.network} is full"))
            return None
        return addr_text(got, subnet.version)

    # -- building the node plan ---------------------------------------------------------------
    def _node_plan(self, node: Node, e: LedgerEntry) -> NodePlan:
        f = self.f
        rack = self.racks[node.rack]
        tors = self._rack_tors.get(rack.name)
        if tors is None:
            tors = self._rack_tors[rack.name] = {t.name: t for t in rack.tors}
        uplinks: list[UplinkPlan] = []
        peers: list[PeerPlan] = []
        asn = e.asn
        if f.asn.mode is AsnMode.CLUSTER:
            asn = f.asn.cluster_asn
        elif f.asn.mode is AsnMode.PER_RACK:
            asn = self.rack_asns.get(node.rack)
        has_v4 = bool(e.ipv4_blocks)
        first4: IPv4Address | None = None  # the router-id unless given: first uplink IPv4
        for tor_name, v4, v6 in e.uplinks:
            tor = tors.get(tor_name)
            if tor is None:
                continue
            i4 = i6 = None
            a4 = a6 = None
            # The pool of the ToR's subnet builds the interface and hands back its address:
            # the peers and the router-id use that one address object.
            if v4 and tor.peering.ipv4:
                made4, got4 = self.hosts[(tor_name, 4)].interface(v4)
                i4, a4 = cast(IPv4Interface, made4), cast(IPv4Address, got4)
                if first4 is None:
                    first4 = a4
            if v6 and tor.peering.ipv6:
                made6, got6 = self.hosts[(tor_name, 6)].interface(v6)
                i6, a6 = cast(IPv6Interface, made6), cast(IPv6Address, got6)
            uplinks.append(UplinkPlan(tor.name, i4, i6, tor.peering.unnumbered))
            peers.extend(self._peers(tor, a4, a6, has_v4=has_v4))
        router_id = node.router_id
        if router_id is None:
            router_id = first4
        if router_id is None and e.ipv4_blocks:
            router_id = cast(IPv4Network, parse_net(e.ipv4_blocks[0])).network_address
        if router_id is None:
            self.problems.append(Problem(node.name, "no IPv4 router-id: give routerId"))
        locator = cast(IPv6Network, parse_net(e.locator)) if e.locator else None
        sids: tuple[Sid, ...] = ()
        if locator is not None:
            decaps = f.srv6.scope is SegmentScope.NODE or node.role is NodeRole.GATEWAY
            base = int(locator.network_address)
            sids = tuple([Sid(cast(IPv6Address, address(base + function, 6)), b)
                          for b, function in (self._sids_decap if decaps else self._sids_end)])
        return NodePlan(
            name=node.name, site=rack.site, rack=rack.name, role=node.role, asn=asn,
            router_id=router_id, uplinks=tuple(uplinks), peers=tuple(peers),
            ipv4_blocks=cast(tuple[IPv4Network, ...],
                             tuple([parse_net(b) for b in e.ipv4_blocks])),
            ipv6_blocks=cast(tuple[IPv6Network, ...],
                             tuple([parse_net(b) for b in e.ipv6_blocks])),
            locator=locator, sids=sids,
            srv6_datapath=node.srv6_datapath or f.srv6.datapath,
        )

    def _peers(self, tor: Router, a4: IPv4Address | None, a6: IPv6Address | None,
               *, has_v4: bool) -> list[PeerPlan]:
        both = _V4_V6 if has_v4 else _V6
        if tor.peering.unnumbered:
            return [PeerPlan(tor.name, tor.asn, None, None, both)]
        peers = []
        v4_over_v6 = self.f.bgp.ipv4_over_ipv6 and a6 is not None and tor.peering.ipv6
        tor4, tor6 = self._tor_ips(tor)
        if a4 is not None and tor4 is not None and not v4_over_v6:
            peers.append(PeerPlan(tor.name, tor.asn, tor4, a4, _V4))
        if a6 is not None and tor6 is not None:
            fams = both if v4_over_v6 else _V6
            peers.append(PeerPlan(tor.name, tor.asn, tor6, a6, fams,
                                  a6 if v4_over_v6 else None))
        return peers

    def _tor_ips(self, tor: Router) -> tuple[IPv4Address | None, IPv6Address | None]:
        # Interface.ip builds a new address object on every access: take each once.
        got = self._tor_ip_cache.get(tor.name)
        if got is None:
            p = tor.peering
            got = (p.ipv4.ip if p.ipv4 else None, p.ipv6.ip if p.ipv6 else None)
            self._tor_ip_cache[tor.name] = got
        return got

    # -- sites and SRv6 segments --------------------------------------------------------------
    def _site_plans(self, plans: list[NodePlan]) -> tuple[SitePlan, ...]:
        f = self.f
        by_site: dict[str, list[NodePlan]] = {s.name: [] for s in f.sites}
        for p in plans:
            by_site[p.site].append(p)
        gateways = {s: tuple(sorted(p.name for p in ps if p.role is NodeRole.GATEWAY))
                    for s, ps in by_site.items()}
        reach: dict[str, list[Segment]] = {}  # segments that lead into each site
        if f.srv6.enabled:
            for s in f.sites:
                reach[s.name] = self._into_site(s, by_site[s.name], gateways[s.name])
        out = []
        for s in f.sites:
            segs: list[Segment] = []
            if f.srv6.enabled:
                for other in f.sites:
                    if other.name != s.name:
                        segs.extend(reach[other.name])
                segs = self._apply_policies(s.name, segs, plans)
            out.append(SitePlan(s.name, (*s.ipv4_pools, *s.ipv6_pools), s.locator_block,
                                gateways[s.name], tuple(segs)))
        return tuple(out)

    def _into_site(self, site: Site, nodes: list[NodePlan],
                   gws: tuple[str, ...]) -> list[Segment]:
        segs: list[Segment] = []
        d4, d6 = self._decap_behaviors()
        if self.f.srv6.scope is SegmentScope.NODE:
            for n in nodes:
                sid4, sid6 = n.sid(d4), n.sid(d6)
                if sid4 is not None:
                    segs += [Segment(b, (sid4,), n.name) for b in n.ipv4_blocks]
                if sid6 is not None:
                    segs += [Segment(b, (sid6,), n.name) for b in n.ipv6_blocks]
            return segs
        if not gws:
            return segs
        gw = next(p for p in nodes if p.name == gws[0])  # the site's own nodes, not all
        sid4, sid6 = gw.sid(d4), gw.sid(d6)
        if sid4 is not None:
            segs += [Segment(p4, (sid4,), gw.name) for p4 in site.ipv4_pools]
        if sid6 is not None:
            segs += [Segment(p6, (sid6,), gw.name) for p6 in site.ipv6_pools]
        return segs

    def _decap_behaviors(self) -> tuple[Behavior, Behavior]:
        return Behavior(self.f.srv6.decap_ipv4.value), Behavior(self.f.srv6.decap_ipv6.value)

    def _apply_policies(self, site: str, segs: list[Segment],
                        plans: list[NodePlan]) -> list[Segment]:
        policies = [p for p in self.f.srv6.policies if p.from_site in (None, site)]
        if not policies:
            return segs
        owner_site = {p.name: p.site for p in plans}
        out = list(segs)
        for pi, pol in enumerate(self.f.srv6.policies):
            if pol not in policies:
                continue
            waypoints = tuple(self._waypoint_sid(w, pi, wi, plans)
                              for wi, w in enumerate(pol.waypoints))
            if pol.to.site is not None:
                out = [Segment(s.prefix, (*waypoints, *s.segments), s.target, pol.name)
                       if owner_site.get(s.target) == pol.to.site else s for s in out]
            elif pol.to.prefix is not None:
                target = self._prefix_target(pol.to.prefix, plans)
                if target is None or owner_site.get(target[0]) == site:
                    continue
                out.append(Segment(pol.to.prefix, (*waypoints, target[1]), target[0], pol.name))
        return out

    def _waypoint_sid(self, name: str, pi: int, wi: int, plans: list[NodePlan]) -> IPv6Address:
        path = f"spec.srv6.policies[{pi}].waypoints[{wi}]"
        router = self.routers.get(name)
        if router is not None:
            if router.locator is None:
                raise InvalidInput([field_error(self.f.source, path, "waypoint router has no "
                                                "locator, hence no End SID", name)])
            return IPv6Address(int(router.locator.network_address) + FUNCTION[Behavior.END])
        for p in plans:
            if p.name == name:
                sid = p.sid(Behavior.END)
                if sid is None:
                    raise InvalidInput([field_error(self.f.source, path, "waypoint node has no "
                                                    "SRv6 locator yet", name)])
                return sid
        raise InvalidInput([field_error(self.f.source, path, "names no router or node", name)])

    def _prefix_target(self, prefix: Prefix,
                       plans: list[NodePlan]) -> tuple[str, IPv6Address] | None:
        d4, d6 = self._decap_behaviors()
        beh = d4 if prefix.version == 4 else d6
        site = next((s for s in self.f.sites if any(_within(prefix, p) for p in _pools(s))), None)
        if site is None:
            return None
        candidates = [p for p in plans if p.site == site.name and p.sid(beh) is not None]
        if self.f.srv6.scope is SegmentScope.SITE:
            candidates = [p for p in candidates if p.role is NodeRole.GATEWAY]
        exact = [p for p in candidates
                 if any(_within(b, prefix) or _within(prefix, b) for b in _blocks(p))]
        if not (exact or candidates):
            return None
        chosen = (exact or candidates)[0]
        sid = chosen.sid(beh)
        assert sid is not None
        return chosen.name, sid


def _pools(site: Site) -> list[Prefix]:
    return [*site.ipv4_pools, *site.ipv6_pools]


def _blocks(p: NodePlan) -> list[Prefix]:
    return [*p.ipv4_blocks, *p.ipv6_blocks]


def _within(a: Prefix, b: Prefix) -> bool:
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def _pins(node: Node | None, text: str) -> bool:
    return node is not None and bool(node.ipv4_blocks or node.ipv6_blocks) and text in {
        str(b) for b in (*node.ipv4_blocks, *node.ipv6_blocks)}


def _replace(e: LedgerEntry, *, retired_at: str | None) -> LedgerEntry:
    return LedgerEntry(e.asn, e.ipv4_blocks, e.ipv6_blocks, e.locator, e.uplinks, retired_at)

