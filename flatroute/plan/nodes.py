"""A node's plan from its allocations: ASN, router-id, uplinks, BGP peers, locator and SIDs."""

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

from flatroute.fabric.model import (
    AsnMode,
    Fabric,
    Node,
    NodeRole,
    Router,
    SegmentScope,
    tor_bfd,
)
from flatroute.plan.alloc import HostPool, address, parse_net
from flatroute.plan.model import Family, LedgerEntry, NodePlan, PeerPlan, Sid, UplinkPlan
from flatroute.plan.problems import Problems
from flatroute.plan.srv6 import locator_functions

# Address families of a BGP session, shared by every peer (not built per peer)
_V4 = (Family.IPV4,)
_V6 = (Family.IPV6,)
_V4_V6 = (Family.IPV4, Family.IPV6)


class NodePlanner:
    def __init__(self, fabric: Fabric, hosts: dict[tuple[str, int], HostPool],
                 rack_asns: dict[str, int], problems: Problems) -> None:
        self.f = fabric
        self.racks = fabric.racks()
        #: the ToR subnets' pools: each builds the interfaces of the addresses it handed out
        self.hosts = hosts
        self.rack_asns = rack_asns
        self.problems = problems
        self._sids_end, self._sids_decap = locator_functions(fabric)
        self._rack_tors: dict[str, dict[str, Router]] = {}
        self._tor_ip_cache: dict[str, tuple[IPv4Address | None, IPv6Address | None]] = {}

    def plan(self, node: Node, e: LedgerEntry) -> NodePlan:
        f = self.f
        rack = self.racks[node.rack]
        asn = e.asn
        if f.asn.mode is AsnMode.CLUSTER:
            asn = f.asn.cluster_asn
        elif f.asn.mode is AsnMode.PER_RACK:
            asn = self.rack_asns.get(node.rack)
        uplinks, peers, first4 = self._uplinks(rack.name, e)
        router_id = node.router_id
        if router_id is None:
            router_id = first4  # the first uplink's IPv4 address
        if router_id is None and e.ipv4_blocks:
            router_id = cast(IPv4Network, parse_net(e.ipv4_blocks[0])).network_address
        if router_id is None:
            self.problems.node(node.name, "no IPv4 router-id: give routerId")
        locator = cast(IPv6Network, parse_net(e.locator)) if e.locator else None
        sids: tuple[Sid, ...] = ()
        if locator is not None:
            decaps = f.srv6.scope is SegmentScope.NODE or node.role is NodeRole.GATEWAY
            base = int(locator.network_address)
            sids = tuple([Sid(cast(IPv6Address, address(base + function, 6)), b)
                          for b, function in (self._sids_decap if decaps else self._sids_end)])
        return NodePlan(
            name=node.name, site=rack.site, rack=rack.name, role=node.role, asn=asn,
            router_id=router_id, uplinks=uplinks, peers=peers,
            ipv4_blocks=cast(tuple[IPv4Network, ...],
                             tuple([parse_net(b) for b in e.ipv4_blocks])),
            ipv6_blocks=cast(tuple[IPv6Network, ...],
                             tuple([parse_net(b) for b in e.ipv6_blocks])),
            locator=locator, sids=sids,
            srv6_datapath=node.srv6_datapath or f.srv6.datapath,
        )

    def _uplinks(self, rack: str, e: LedgerEntry) -> tuple[
            tuple[UplinkPlan, ...], tuple[PeerPlan, ...], IPv4Address | None]:
        """The node's uplinks and BGP peers, and its first uplink IPv4 address."""
        tors = self._rack_tors.get(rack)
        if tors is None:
            tors = self._rack_tors[rack] = {t.name: t for t in self.racks[rack].tors}
        uplinks: list[UplinkPlan] = []
        peers: list[PeerPlan] = []
        has_v4 = bool(e.ipv4_blocks)
        first4: IPv4Address | None = None
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
            bfd = tor_bfd(self.f.bgp.bfd.enabled, self.racks[rack], tor)
            peers.extend(self._peers(tor, a4, a6, has_v4=has_v4, bfd=bfd))
        return tuple(uplinks), tuple(peers), first4

    def _peers(self, tor: Router, a4: IPv4Address | None, a6: IPv6Address | None,
               *, has_v4: bool, bfd: bool) -> list[PeerPlan]:
        both = _V4_V6 if has_v4 else _V6
        if tor.peering.unnumbered:
            return [PeerPlan(tor.name, tor.asn, None, None, both, bfd=bfd)]
        peers = []
        v4_over_v6 = self.f.bgp.ipv4_over_ipv6 and a6 is not None and tor.peering.ipv6
        tor4, tor6 = self._tor_ips(tor)
        if a4 is not None and tor4 is not None and not v4_over_v6:
            peers.append(PeerPlan(tor.name, tor.asn, tor4, a4, _V4, bfd=bfd))
        if a6 is not None and tor6 is not None:
            fams = both if v4_over_v6 else _V6
            peers.append(PeerPlan(tor.name, tor.asn, tor6, a6, fams,
                                  a6 if v4_over_v6 else None, bfd))
        return peers

    def _tor_ips(self, tor: Router) -> tuple[IPv4Address | None, IPv6Address | None]:
        # Interface.ip builds a new address object on every access: take each once.
        got = self._tor_ip_cache.get(tor.name)
        if got is None:
            p = tor.peering
            got = (p.ipv4.ip if p.ipv4 else None, p.ipv6.ip if p.ipv6 else None)
            self._tor_ip_cache[tor.name] = got
        return got
