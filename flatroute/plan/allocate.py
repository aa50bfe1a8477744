"""Who gets what: pod blocks, locators, ASNs and uplink addresses, kept for life.

The pools (`flatroute.plan.alloc`) are set up from the fabric; then every allocation the
ledger already holds is claimed (pins first), so a node keeps its blocks, locator, ASN and
uplink addresses; then each node is given what it still lacks, first free first. Exhaustion
is reported to the planner's Problems, never raised.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, IPv6Network

from flatroute.fabric.model import AsnMode, Fabric, Node, Rack, Router, Site
from flatroute.fabric.usid import router_blocks, site_block
from flatroute.plan.alloc import (
    BlockPool,
    HostPool,
    NumberPool,
    addr_text,
    parse_addr,
    parse_net,
)
from flatroute.plan.model import Ledger, LedgerEntry
from flatroute.plan.problems import Problems
from flatroute.plan.usid import node_id_pool

#: a ledger entry's uplinks: (tor, ipv4, ipv6) as text
Uplinks = tuple[tuple[str, str | None, str | None], ...]


class Allocator:
    def __init__(self, fabric: Fabric, problems: Problems) -> None:
        self.f = fabric
        self.problems = problems
        self.racks: dict[str, Rack] = fabric.racks()
        self.sites: dict[str, Site] = {s.name: s for s in fabric.sites}
        self.v4: dict[str, BlockPool] = {}
        self.v6: dict[str, BlockPool] = {}
        self.loc: dict[str, BlockPool] = {}
        #: uSID: one pool of node IDs per block, shared by every site and router in it
        self.id_pools: dict[str, BlockPool] = {}
        for s in fabric.sites:
            self.v4[s.name] = BlockPool(s.ipv4_pools, fabric.pods.ipv4_block_size)
            self.v6[s.name] = BlockPool(s.ipv6_pools, fabric.pods.ipv6_block_size)
            if fabric.srv6.usid:
                block = site_block(fabric, s.name)
                self.loc[s.name] = self._id_pool(block) if block else BlockPool((), 48)
                continue
            loc_pools = (s.locator_block,) if s.locator_block else ()
            # Locator 0 of each site block stays free for site-level (anycast) use.
            self.loc[s.name] = BlockPool(loc_pools, fabric.srv6.locator_length, skip_first=1)
        scheme = fabric.asn
        router_asns = {r.asn for r in fabric.routers().values()}
        self.asns = NumberPool(scheme.range_start, scheme.range_end, router_asns)
        #: the free addresses of each ToR peering subnet, by (ToR, IP version)
        self.hosts: dict[tuple[str, int], HostPool] = {}
        for rack in self.racks.values():
            for tor in rack.tors:
                for subnet in (tor.peering.ipv4, tor.peering.ipv6):
                    if subnet is not None:
                        self.hosts[(tor.name, subnet.version)] = HostPool(
                            subnet.network, (int(subnet.ip),))
        self.pinned_blocks: set[str] = set()
        self.pinned_nodes: dict[str, Node] = {}
        self.router_entries: dict[str, LedgerEntry] = {}
        self._router_blocks: dict[str, IPv6Network | None] = {}

    def _id_pool(self, block: IPv6Network) -> BlockPool:
        key = str(block)
        if key not in self.id_pools:
            first, last = self.f.srv6.node_ids
            self.id_pools[key] = node_id_pool(block, first, last)
        return self.id_pools[key]

    # -- claiming what exists -------------------------------------------------------------------
    def claim(self, nodes: list[Node], ledger: Ledger) -> dict[str, LedgerEntry]:
        """Claim the fabric's pins, then every allocation the ledger holds, active or
        retired; return the ledger's entries, less what no pool can hold any more."""
        self._claim_pins(nodes)
        self._claim_router_pins()
        out = {name: self._claim_entry(name, ledger.nodes[name])
               for name in sorted(ledger.nodes)}
        self.router_entries = self._claim_routers(ledger)
        return out

    # -- uSID routers: a node ID each, for life -------------------------------------------------
    def _claim_router_pins(self) -> None:
        self.router_entries = {}
        self._router_blocks = router_blocks(self.f) if self.f.srv6.usid else {}
        routers = self.f.routers()
        for name, block in self._router_blocks.items():
            loc = routers[name].locator
            if block is not None and loc is not None:
                self._id_pool(block).claim(loc)

    def _claim_routers(self, ledger: Ledger) -> dict[str, LedgerEntry]:
        routers = self.f.routers()
        out: dict[str, LedgerEntry] = {}
        for name in sorted(ledger.routers):
            e = ledger.routers[name]
            block = self._router_blocks.get(name)
            pin = routers[name].locator if name in routers else None
            # a router gone (or no longer uSID) keeps its ID in whichever block holds it
            pools = [self._id_pool(block)] if block is not None else list(
                self.id_pools.values())
            net = parse_net(e.locator) if e.locator else None
            pool = next((p for p in pools if net is not None and p.contains(net)), None)
            if pool is not None and net is not None and (pool.claim(net) or (
                    pin is not None and str(pin) == e.locator)):
                out[name] = e
        return out

    def allocate_routers(self) -> dict[str, LedgerEntry]:
        """Every uSID router's entry: its pin, else the ledger's, else the first free ID."""
        out = dict(self.router_entries)
        routers = self.f.routers()
        for name, block in sorted(self._router_blocks.items()):
            pin = routers[name].locator
            have = out.get(name)
            if pin is not None:
                out[name] = LedgerEntry(locator=str(pin))
            elif have is not None:
                out[name] = LedgerEntry(locator=have.locator)  # back: active again
            elif block is not None:
                got = self._id_pool(block).allocate_text()
                if got is None:
                    self.problems.node(name, f"node IDs of uSID block {block} are exhausted "
                                       "(spec.srv6.nodeIds): no uSID assigned")
                else:
                    out[name] = LedgerEntry(locator=got)
        return out

    def rack_asns(self, ledger: Ledger) -> dict[str, int]:
        """The ASN of every rack (per-rack scheme): the ledger's, else the first free one."""
        rack_asns = dict(ledger.racks)
        if self.f.asn.mode is AsnMode.PER_RACK:
            for asn in rack_asns.values():
                self.asns.claim(asn)
            for rack_name in sorted(self.racks):
                if rack_name not in rack_asns:
                    got = self.asns.allocate()
                    if got is None:
                        self.problems.node(rack_name, "ASN range exhausted (spec.asn.range)")
                    else:
                        rack_asns[rack_name] = got
        return rack_asns

    def _claim_pins(self, nodes: list[Node]) -> None:
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
    def allocate(self, node: Node, e: LedgerEntry) -> LedgerEntry:
        """The node's entry with everything it lacks allocated (or reported missing)."""
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
        if f.srv6.enabled and locator is None and f.srv6.usid:
            block = site_block(f, site.name)
            if block is not None:
                taken = self._take(self.loc[site.name], node, "node IDs of uSID block {} are "
                                   "exhausted (spec.srv6.nodeIds): no uSID assigned",
                                   str(block))
                locator = taken[0] if taken else None
        elif f.srv6.enabled and locator is None and site.locator_block is not None:
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
                    self.problems.node(node.name, "ASN range spec.asn.range is exhausted")
        uplinks = self._uplinks(node, rack, e)
        return LedgerEntry(asn, b4, b6, locator, uplinks, None)

    def _take(self, pool: BlockPool, node: Node, exhausted: str,
              site: str) -> tuple[str, ...]:
        """One block from the pool as ledger text, or () with the problem reported (the
        message is formatted only then: this runs for every block of a cold plan)."""
        got = pool.allocate_text()
        if got is None:
            self.problems.node(node.name, exhausted.format(site))
            return ()
        return (got,)

    def _uplinks(self, node: Node, rack: Rack, e: LedgerEntry) -> Uplinks:
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
            self.problems.node(node.name, f"peering subnet of {tor.name} "
                               f"{subnet.network} is full")
            return None
        return addr_text(got, subnet.version)


def _pins(node: Node | None, text: str) -> bool:
    return node is not None and bool(node.ipv4_blocks or node.ipv6_blocks) and text in {
        str(b) for b in (*node.ipv4_blocks, *node.ipv6_blocks)}
