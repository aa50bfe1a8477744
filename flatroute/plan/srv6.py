"""SRv6 planning: the SIDs of a node's locator, and each site's segments toward the others.

Every site encapsulates traffic for another site's prefixes toward the SID that decapsulates
it there (each node's with scope node, a gateway's with scope site); policies then prepend
their waypoints' End SIDs, or add a steered route for one prefix.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from flatroute.fabric.model import (
    USID_LOCATOR_LENGTH,
    Fabric,
    NodeRole,
    Router,
    SegmentScope,
    Site,
)
from flatroute.fabric.usid import MAX_CONTAINERS, site_block
from flatroute.plan.model import (
    FUNCTION,
    Behavior,
    NodePlan,
    Prefix,
    RouterSrv6,
    Segment,
    SitePlan,
    sid_of,
)
from flatroute.plan.problems import Problems
from flatroute.plan.usid import pack

#: the (behaviour, function) pairs of a locator's SIDs
Functions = tuple[tuple[Behavior, int], ...]


def decap_behaviors(fabric: Fabric) -> tuple[Behavior, Behavior]:
    """The behaviours that decapsulate IPv4 and IPv6 (spec.srv6.decapIpv4, decapIpv6); in
    uSID format one uSID per node does both: uDT46, or uDT4 / uDT6 in a one-family fabric."""
    if fabric.srv6.usid:
        v4 = any(s.ipv4_pools for s in fabric.sites)
        v6 = any(s.ipv6_pools for s in fabric.sites)
        b = Behavior.UDT46 if v4 and v6 else Behavior.UDT4 if v4 else Behavior.UDT6
        return b, b
    return Behavior(fabric.srv6.decap_ipv4.value), Behavior(fabric.srv6.decap_ipv6.value)


def locator_functions(fabric: Fabric) -> tuple[Functions, Functions]:
    """The SIDs of a node's locator: for a node that only forwards, and for one that
    decapsulates; the same for every node. uSID: the node's one uSID, block:ID::/48."""
    d4, d6 = decap_behaviors(fabric)
    if fabric.srv6.usid:
        return (), ((d4, 0),)
    end = ((Behavior.END, FUNCTION[Behavior.END]),)
    decap = end + (((d4, FUNCTION[d4]),) if d4 == d6
                   else ((d4, FUNCTION[d4]), (d6, FUNCTION[d6])))
    return end, decap


class SitePlanner:
    def __init__(self, fabric: Fabric, routers: dict[str, Router], plans: list[NodePlan],
                 problems: Problems, usid_routers: dict[str, RouterSrv6] | None = None) -> None:
        self.f = fabric
        self.routers = routers
        self.usid_routers = usid_routers or {}
        self.plans = plans
        self.problems = problems
        self.d4, self.d6 = decap_behaviors(fabric)
        #: each policy's waypoint SIDs by index, resolved once (None: a waypoint has none)
        self._waypoints: dict[int, tuple[IPv6Address, ...] | None] = {}

    def plans_by_site(self) -> tuple[SitePlan, ...]:
        f = self.f
        by_site: dict[str, list[NodePlan]] = {s.name: [] for s in f.sites}
        for p in self.plans:
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
                segs = self._apply_policies(s.name, segs)
                if f.srv6.usid:
                    segs = [self._compress(g, s.name) for g in segs]
            block = site_block(f, s.name) if f.srv6.usid else s.locator_block
            out.append(SitePlan(s.name, (*s.ipv4_pools, *s.ipv6_pools), block,
                                gateways[s.name], tuple(segs)))
        return tuple(out)

    def _into_site(self, site: Site, nodes: list[NodePlan],
                   gws: tuple[str, ...]) -> list[Segment]:
        segs: list[Segment] = []
        d4, d6 = self.d4, self.d6
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

    def _apply_policies(self, site: str, segs: list[Segment]) -> list[Segment]:
        policies = [p for p in self.f.srv6.policies if p.from_site in (None, site)]
        if not policies:
            return segs
        owner_site = {p.name: p.site for p in self.plans}
        out = list(segs)
        for pi, pol in enumerate(self.f.srv6.policies):
            if pol not in policies:
                continue
            waypoints = self._policy_waypoints(pi)
            if waypoints is None:
                continue  # reported: the plan is rejected
            if pol.to.site is not None:
                out = [Segment(s.prefix, (*waypoints, *s.segments), s.target, pol.name)
                       if owner_site.get(s.target) == pol.to.site else s for s in out]
            elif pol.to.prefix is not None:
                target = self._prefix_target(pol.to.prefix)
                if target is None or owner_site.get(target[0]) == site:
                    continue
                out.append(Segment(pol.to.prefix, (*waypoints, target[1]), target[0], pol.name))
        return out

    def _policy_waypoints(self, pi: int) -> tuple[IPv6Address, ...] | None:
        if pi not in self._waypoints:
            pol = self.f.srv6.policies[pi]
            sids = [self._waypoint_sid(w, f"spec.srv6.policies[{pi}].waypoints[{wi}]")
                    for wi, w in enumerate(pol.waypoints)]
            self._waypoints[pi] = tuple(s for s in sids if s is not None) \
                if None not in sids else None
        return self._waypoints[pi]

    def _compress(self, seg: Segment, site: str) -> Segment:
        """A segment list of uSIDs (each block:ID::) as containers; the uSIDs kept beside."""
        usids = tuple(IPv6Network((int(a), USID_LOCATOR_LENGTH)) for a in seg.segments)
        packed = pack(usids)
        if len(packed) > MAX_CONTAINERS:
            where = next((f"spec.srv6.policies[{i}]" for i, p in enumerate(self.f.srv6.policies)
                          if p.name == seg.policy), "spec.srv6.policies")
            self.problems.field(where, f"the path from site {site} needs {len(packed)} uSID "
                                f"containers; the datapaths carry at most {MAX_CONTAINERS}",
                                seg.policy)
        return Segment(seg.prefix, packed, seg.target, seg.policy, usids)

    def _waypoint_sid(self, name: str, path: str) -> IPv6Address | None:
        """A waypoint's End SID; None, with the fabric problem reported, if it has none."""
        if self.f.srv6.usid:
            return self._waypoint_usid(name, path)
        router = self.routers.get(name)
        if router is not None:
            if router.locator is None:
                self.problems.field(path, "waypoint router has no locator, hence no End SID",
                                    name)
                return None
            return sid_of(router.locator, Behavior.END)
        for p in self.plans:
            if p.name == name:
                sid = p.sid(Behavior.END)
                if sid is None:
                    self.problems.field(path, "waypoint node has no SRv6 locator yet", name)
                return sid
        self.problems.field(path, "names no router or node", name)
        return None

    def _waypoint_usid(self, name: str, path: str) -> IPv6Address | None:
        """A uSID waypoint's uN (the fabric checks already refused nodes and non-uSID
        routers); None, reported, while the router has no node ID (IDs exhausted)."""
        r = self.usid_routers.get(name)
        if r is None:
            self.problems.field(path, "waypoint router has no uSID node ID", name)
            return None
        return r.sids[0].sid

    def _prefix_target(self, prefix: Prefix) -> tuple[str, IPv6Address] | None:
        beh = self.d4 if prefix.version == 4 else self.d6
        site = next((s for s in self.f.sites if any(_within(prefix, p) for p in _pools(s))),
                    None)
        if site is None:
            return None
        candidates = [p for p in self.plans if p.site == site.name and p.sid(beh) is not None]
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
