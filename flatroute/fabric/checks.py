"""Whole-document rules of a parsed fabric, each error recorded with its field path.

They run after `flatroute.fabric.parse` even when it found field errors, so that one run
reports everything; they skip the neutral values (ASN 0, router-id 0.0.0.0) a bad field left,
so one mistake does not cascade into others.
"""

from __future__ import annotations

from collections import defaultdict

from flatroute.fabric.model import (
    AsnMode,
    EncapMode,
    Fabric,
    Node,
    NodeRole,
    Rack,
    Router,
    SegmentScope,
    Site,
)
from flatroute.fabric.parse import NO_ID, Net
from flatroute.fabric.reader import Reader
from flatroute.fabric.service_checks import check_services
from flatroute.fabric.usid import check_usid, policy_containers

#: every router with its field path and its role (wan, spine or tor)
Routers = list[tuple[str, Router, str]]


def check_fabric(f: Fabric, r: Reader) -> None:
    """Record every cross-reference, uniqueness, overlap and size problem of `f` in `r`."""
    # Unique names across every entity: they are keys for ports, waypoints and the lab.
    seen: dict[str, str] = {}
    for path, name in _named_things(f):
        if name in seen:
            r.error(f"{path}.name", f"duplicate name, already used at {seen[name]}", name)
        else:
            seen[name] = path
    routers = _router_paths(f)
    _check_router_asns(f, r, routers)
    _check_unique_values(f, r, routers)
    _check_overlaps(f, r)
    _check_sizes(f, r)
    _check_nodes(f, r)
    _check_pins(f, r)
    _check_ipv4_over_ipv6(f, r, routers)
    _check_srv6(f, r)
    if f.srv6.enabled or not f.srv6.usid:
        check_usid(f, r, routers)
    check_services(f, r)


def _check_router_asns(f: Fabric, r: Reader, routers: Routers) -> None:
    by_asn: dict[int, tuple[str, Router, str]] = {}
    for path, router, role in routers:
        if router.asn == 0:
            continue
        prev = by_asn.get(router.asn)
        if prev is None:
            by_asn[router.asn] = (path, router, role)
            continue
        same_spine_tier = role == prev[2] == "spine" and path.split(".spines")[0] == prev[
            0].split(".spines")[0]
        if not same_spine_tier:
            r.error(f"{path}.asn", f"duplicate ASN, already used by {prev[1].name}",
                    router.asn)
    scheme = f.asn
    if scheme.mode is AsnMode.CLUSTER and scheme.cluster_asn in by_asn:
        r.error("spec.asn.cluster", "collides with a router's ASN", scheme.cluster_asn)
    if scheme.mode is not AsnMode.CLUSTER:
        for asn, (path, _router, _role) in by_asn.items():
            if scheme.range_start <= asn <= scheme.range_end:
                r.error(f"{path}.asn", "lies inside the node/rack ASN range "
                        "spec.asn.range", asn)
    for i, node in enumerate(f.nodes):
        if node.asn is not None and node.asn in by_asn:
            r.error(f"spec.nodes[{i}].asn", "collides with a router's ASN", node.asn)
    pinned: dict[int, int] = {}
    if scheme.mode is AsnMode.PER_NODE:
        for i, node in enumerate(f.nodes):
            if node.asn is None:
                continue
            if node.asn in pinned:
                r.error(f"spec.nodes[{i}].asn", "duplicate ASN, already pinned by "
                        f"{f.nodes[pinned[node.asn]].name}", node.asn)
            pinned[node.asn] = i


def _check_unique_values(f: Fabric, r: Reader, routers: Routers) -> None:
    seen: dict[str, str] = {}

    def claim(path: str, value: object) -> None:
        key = str(value)
        if key in seen:
            r.error(path, f"duplicate address, already used at {seen[key]}", key)
        else:
            seen[key] = path

    for path, router, _ in routers:
        if router.router_id != NO_ID:
            claim(f"{path}.routerId", router.router_id)
    for i, node in enumerate(f.nodes):
        if node.router_id is not None:
            claim(f"spec.nodes[{i}].routerId", node.router_id)
    for path, router, _ in routers:
        if router.peering.ipv4:
            claim(f"{path}.peering.ipv4", router.peering.ipv4.ip)
        if router.peering.ipv6:
            claim(f"{path}.peering.ipv6", router.peering.ipv6.ip)
    for i, node in enumerate(f.nodes):
        for up in node.uplinks:
            if up.ipv4:
                claim(f"spec.nodes[{i}].uplinks.{up.tor}.ipv4", up.ipv4)
            if up.ipv6:
                claim(f"spec.nodes[{i}].uplinks.{up.tor}.ipv6", up.ipv6)

def _check_overlaps(f: Fabric, r: Reader) -> None:
    nets: list[tuple[str, Net]] = []
    for si, s in enumerate(f.sites):
        base = f"spec.sites[{si}]"
        nets += [(f"{base}.pools.ipv4[{i}]", n) for i, n in enumerate(s.ipv4_pools)]
        nets += [(f"{base}.pools.ipv6[{i}]", n) for i, n in enumerate(s.ipv6_pools)]
        if s.locator_block:
            nets.append((f"{base}.locatorBlock", s.locator_block))
        if s.underlay.ipv4:
            nets.append((f"{base}.underlay.ipv4", s.underlay.ipv4))
        if s.underlay.ipv6:
            nets.append((f"{base}.underlay.ipv6", s.underlay.ipv6))
    if f.srv6.locator_block:
        nets.append(("spec.srv6.locatorBlock", f.srv6.locator_block))
    for path, router, _ in _router_paths(f):
        # a uSID router's locator pins its node ID inside a block (checked in fabric.usid)
        if router.locator and not (f.srv6.usid and router.usid):
            nets.append((f"{path}.locator", router.locator))
    by_family: dict[int, list[tuple[str, Net]]] = defaultdict(list)
    for path, net in nets:
        by_family[net.version].append((path, net))
    for family in by_family.values():
        # Prefixes either nest or are disjoint: sweep in address order, keeping the chain
        # of prefixes that contain the current address, so every overlapping pair is
        # reported (not only neighbours in the sort order).
        family.sort(key=lambda x: (int(x[1].network_address), x[1].prefixlen))
        open_: list[tuple[str, Net]] = []
        for pb, nb in family:
            start = int(nb.network_address)
            while open_ and int(open_[-1][1].broadcast_address) < start:
                open_.pop()
            for pa, na in open_:
                r.error(pb, f"overlaps {na} at {pa}", str(nb))
            open_.append((pb, nb))

def _check_sizes(f: Fabric, r: Reader) -> None:
    pods = f.pods
    for si, site in enumerate(f.sites):
        if len(site.racks) > 1 and not site.spines:
            # ToRs never peer with each other, and the WAN carries no pod routes.
            r.error(f"spec.sites[{si}].spines", "a site with more than one rack "
                    "needs spines: nothing else joins its racks", site.name)
    for si, s in enumerate(f.sites):
        for i, n4 in enumerate(s.ipv4_pools):
            if pods.ipv4_block_size < n4.prefixlen:
                r.error(f"spec.sites[{si}].pools.ipv4[{i}]", "is smaller than one pod "
                        f"block (spec.pods.ipv4BlockSize /{pods.ipv4_block_size})",
                        str(n4))
        for i, n6 in enumerate(s.ipv6_pools):
            if pods.ipv6_block_size < n6.prefixlen:
                r.error(f"spec.sites[{si}].pools.ipv6[{i}]", "is smaller than one pod "
                        f"block (spec.pods.ipv6BlockSize /{pods.ipv6_block_size})",
                        str(n6))
        if s.locator_block and f.srv6.locator_length <= s.locator_block.prefixlen:
            r.error(f"spec.sites[{si}].locatorBlock", "must be shorter than "
                    f"spec.srv6.locatorLength (/{f.srv6.locator_length})",
                    str(s.locator_block))


def _check_nodes(f: Fabric, r: Reader) -> None:
    racks = f.racks()
    site_of = {rk.name: rk.site for rk in racks.values()}
    for i, node in enumerate(f.nodes):
        p = f"spec.nodes[{i}]"
        rack = racks.get(node.rack)
        if rack is None:
            r.error(f"{p}.rack", "names no rack of any site", node.rack)
            continue
        _check_uplinks(r, p, node, rack)
        _check_pod_blocks(f, r, p, node, f.site(site_of[node.rack]))
        if f.asn.mode is not AsnMode.PER_NODE and node.asn is not None:
            r.error(f"{p}.asn", f"can only be pinned with spec.asn.scheme per-node "
                    f"(scheme is {f.asn.mode.value})", node.asn)
        elif node.asn is not None and not (f.asn.range_start <= node.asn <= f.asn.range_end):
            r.error(f"{p}.asn", "lies outside spec.asn.range", node.asn)


def _check_uplinks(r: Reader, p: str, node: Node, rack: Rack) -> None:
    tors = {t.name: t for t in rack.tors}
    for up in node.uplinks:
        tor = tors.get(up.tor)
        if tor is None:
            r.error(f"{p}.uplinks.{up.tor}", f"is not a ToR of rack {rack.name} "
                    f"(ToRs: {', '.join(tors)})", up.tor)
            continue
        for fam, addr, length, net in (("ipv4", up.ipv4, up.ipv4_len, tor.peering.ipv4),
                                       ("ipv6", up.ipv6, up.ipv6_len, tor.peering.ipv6)):
            if addr is None:
                continue
            where = f"{p}.uplinks.{up.tor}.{fam}"
            if length is not None and net is not None and length != net.network.prefixlen:
                r.error(where, f"has the prefix length /{length}, but the ToR's peering "
                        f"subnet is {net.network}: write {addr} or {addr}/"
                        f"{net.network.prefixlen}", f"{addr}/{length}")
            elif tor.peering.unnumbered:
                r.error(where, f"{tor.name} peers unnumbered: no uplink address", str(addr))
            elif net is None or addr not in net.network:
                r.error(where, "is not inside the ToR's peering subnet "
                        f"{net.network if net else '(none)'}", str(addr))
            elif addr in (net.ip, net.network.network_address):
                r.error(where, "is the ToR's own or the subnet's network address", str(addr))


def _check_pod_blocks(f: Fabric, r: Reader, p: str, node: Node, site: Site) -> None:
    checks: tuple[tuple[str, tuple[Net, ...], tuple[Net, ...], int], ...] = (
        ("ipv4", node.ipv4_blocks, site.ipv4_pools, f.pods.ipv4_block_size),
        ("ipv6", node.ipv6_blocks, site.ipv6_pools, f.pods.ipv6_block_size),
    )
    for fam, blocks, pools, size in checks:
        for bi, b in enumerate(blocks):
            bp = f"{p}.podBlocks.{fam}[{bi}]"
            if b.prefixlen != size:
                r.error(bp, f"must be a /{size} (spec.pods.{fam}BlockSize)", str(b))
            elif not any(_within(b, pool) for pool in pools):
                r.error(bp, f"is not inside a {fam} pool of site {site.name}", str(b))


def _check_pins(f: Fabric, r: Reader) -> None:
    """Pinned blocks must not be pinned twice."""
    owner: dict[str, str] = {}
    for i, node in enumerate(f.nodes):
        pins: tuple[tuple[str, tuple[Net, ...]], ...] = (
            ("ipv4", node.ipv4_blocks), ("ipv6", node.ipv6_blocks))
        for fam, blocks in pins:
            for bi, b in enumerate(blocks):
                if str(b) in owner:
                    r.error(f"spec.nodes[{i}].podBlocks.{fam}[{bi}]",
                            f"is already pinned by {owner[str(b)]}", str(b))
                owner[str(b)] = node.name


def _check_ipv4_over_ipv6(f: Fabric, r: Reader, routers: Routers) -> None:
    if f.bgp.ipv4_over_ipv6:
        for path, router, role in routers:
            if role == "tor" and router.peering.ipv6 is None and not router.peering.unnumbered:
                r.error(f"{path}.peering.ipv6", "spec.bgp.ipv4OverIpv6 needs an IPv6 "
                        "peering subnet on every ToR")


def _check_srv6(f: Fabric, r: Reader) -> None:
    if not f.srv6.enabled:
        if f.srv6.policies:
            r.error("spec.srv6.policies", "policies need spec.srv6.enabled: true")
        return
    for si, s in enumerate(f.sites):
        if s.locator_block is None and not f.srv6.usid:  # uSID: see fabric.usid
            r.error(f"spec.sites[{si}].locatorBlock", "is required when SRv6 is enabled")
    if f.srv6.scope is SegmentScope.SITE and len(f.sites) > 1:
        for si, s in enumerate(f.sites):
            racks = {rk.name for rk in s.racks}
            if not any(n.role is NodeRole.GATEWAY and n.rack in racks for n in f.nodes):
                r.error(f"spec.sites[{si}]", "SRv6 scope 'site' needs at least one "
                        "node with role: gateway in every site", s.name)
    _check_mtu(f, r)
    names = {n.name for n in f.nodes} | set(f.routers())
    sites = {s.name for s in f.sites}
    for pi, pol in enumerate(f.srv6.policies):
        p = f"spec.srv6.policies[{pi}]"
        if pol.to.site is not None and pol.to.site not in sites:
            r.error(f"{p}.to.site", "names no site", pol.to.site)
        if pol.from_site is not None and pol.from_site not in sites:
            r.error(f"{p}.from.site", "names no site", pol.from_site)
        for wi, wp in enumerate(pol.waypoints):
            if wp not in names:
                r.error(f"{p}.waypoints[{wi}]", "names no router or node", wp)


def _check_mtu(f: Fabric, r: Reader) -> None:
    """A pod packet must still fit the underlay once encapsulated: one that does not is
    dropped without an ICMP error (measured in the lab), a silent black hole for every
    full-size packet between sites."""
    if len(f.sites) < 2 and not f.srv6.policies:
        return  # nothing is encapsulated
    segments = 1 + max((sum(len(pol.waypoints) for pol in f.srv6.policies
                            if pol.from_site in (None, s.name)) for s in f.sites), default=0)
    if f.srv6.usid:
        segments = policy_containers(f)  # the segments are uSID containers
    overhead = encap_overhead(f.srv6.encap_mode, segments)
    if f.pods.mtu + overhead > f.srv6.underlay_mtu:
        r.error("spec.pods.mtu", f"{f.pods.mtu} + {overhead} bytes of SRv6 "
                f"encapsulation ({f.srv6.encap_mode.value}, up to {segments} "
                f"{'container' if f.srv6.usid else 'segment'}{'s' if segments > 1 else ''}) "
                "exceeds spec.srv6.underlayMtu "
                f"{f.srv6.underlay_mtu}: cross-site packets that size would be dropped "
                f"silently; use at most {f.srv6.underlay_mtu - overhead} or raise "
                "underlayMtu", str(f.pods.mtu))


def encap_overhead(mode: EncapMode, segments: int) -> int:
    """Bytes SRv6 adds to a packet: the outer IPv6 header, and an SRH (8 bytes + 16 per
    segment it lists) unless H.Encaps.Red carries a single segment in the outer header."""
    listed = segments - 1 if mode is EncapMode.ENCAP_RED else segments
    return 40 + (8 + 16 * listed if listed > 0 else 0)


def _within(a: Net, b: Net) -> bool:
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def _named_things(f: Fabric) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for si, s in enumerate(f.sites):
        out.append((f"spec.sites[{si}]", s.name))
    for path, router, _ in _router_paths(f):
        out.append((path, router.name))
    for si, s in enumerate(f.sites):
        for ri, rack in enumerate(s.racks):
            out.append((f"spec.sites[{si}].racks[{ri}]", rack.name))
    for i, n in enumerate(f.nodes):
        out.append((f"spec.nodes[{i}]", n.name))
    return out


def _router_paths(f: Fabric) -> Routers:
    out = [(f"spec.wan.routers[{i}]", w, "wan") for i, w in enumerate(f.wan_routers)]
    for si, s in enumerate(f.sites):
        out += [(f"spec.sites[{si}].spines[{i}]", sp, "spine") for i, sp in enumerate(s.spines)]
        for ri, rack in enumerate(s.racks):
            out += [(f"spec.sites[{si}].racks[{ri}].tors[{ti}]", t, "tor")
                    for ti, t in enumerate(rack.tors)]
    return out
