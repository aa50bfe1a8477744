"""Whole-document rules of `spec.services`, each error recorded with its field path.

- service prefixes (pools, the ClusterIP range) never overlap each other, a site's pod pools,
  locator blocks, underlays, router locators or ToR server subnets;
- a pool's sites and racks exist, its racks lie in its sites, and every site it covers can
  carry its families (a node announces a /128 only where its site has IPv6 pod pools);
- a static service names a known pool, addresses inside it (one per family), external IPs
  inside some pool, and endpoints that are pods of known nodes (NODE-pN, as the lab names
  them) in the scope of the pool its addresses come from.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flatroute.fabric.reader import Reader
from flatroute.fabric.services import Addr, Net, ServicePool, Services, StaticService

if TYPE_CHECKING:
    from flatroute.fabric.model import Fabric

_P = "spec.services"
_POD = re.compile(r"^(?P<node>.+)-p(?P<index>\d+)$")


def node_of_pod(pod: str) -> str | None:
    """The node a static endpoint's pod runs on: pods are named NODE-pN (as in the lab)."""
    m = _POD.match(pod)
    return m.group("node") if m else None


def pool_nodes(f: Fabric, pool: ServicePool | None) -> tuple[str, ...]:
    """The nodes in a pool's scope (every node without a pool or scope), in fabric order."""
    if pool is None or (not pool.sites and not pool.racks):
        return tuple(n.name for n in f.nodes)
    racks = f.racks()
    out = []
    for n in f.nodes:
        rack = racks.get(n.rack)
        if rack is None:
            continue
        if (pool.racks and rack.name in pool.racks) or (not pool.racks and rack.site in
                                                         pool.sites):
            out.append(n.name)
    return tuple(out)


def check_services(f: Fabric, r: Reader) -> None:
    s = f.services
    seen: dict[str, int] = {}
    for i, pool in enumerate(s.pools):
        if pool.name in seen:
            r.error(f"{_P}.pools[{i}].name", "duplicate pool name, already used at "
                    f"{_P}.pools[{seen[pool.name]}]", pool.name)
        seen.setdefault(pool.name, i)
        _check_scope(f, r, i, pool)
    _check_overlaps(f, r)
    names: dict[str, int] = {}
    claimed: dict[Addr, str] = {}
    for i, svc in enumerate(s.static):
        p = f"{_P}.static[{i}]"
        if svc.key in names:
            r.error(f"{p}.name", f"duplicate service, already at {_P}.static[{names[svc.key]}]",
                    svc.key)
        names.setdefault(svc.key, i)
        _check_static(f, r, p, svc, claimed)


def _check_scope(f: Fabric, r: Reader, i: int, pool: ServicePool) -> None:
    p = f"{_P}.pools[{i}]"
    sites = {x.name: x for x in f.sites}
    racks = f.racks()
    for j, name in enumerate(pool.sites):
        if name not in sites:
            r.error(f"{p}.sites[{j}]", "unknown site", name)
    for j, name in enumerate(pool.racks):
        rack = racks.get(name)
        if rack is None:
            r.error(f"{p}.racks[{j}]", "unknown rack", name)
        elif pool.sites and rack.site not in pool.sites:
            r.error(f"{p}.racks[{j}]", f"rack of site {rack.site}, outside the pool's sites "
                    f"({', '.join(pool.sites)})", name)
    covered = set(pool.sites) if pool.sites and not pool.racks else (
        {racks[x].site for x in pool.racks if x in racks} if pool.racks else set(sites))
    for name in sorted(covered & set(sites)):
        site = sites[name]
        if pool.ipv4 and not site.ipv4_pools:
            r.error(f"{p}.ipv4", f"site {name} has no IPv4 pod pool: its nodes have no IPv4 "
                    "sessions to announce the pool on", str(pool.ipv4[0]))
        if pool.ipv6 and not site.ipv6_pools:
            r.error(f"{p}.ipv6", f"site {name} has no IPv6 pod pool: its nodes have no IPv6 "
                    "sessions to announce the pool on", str(pool.ipv6[0]))


def _fabric_nets(f: Fabric) -> list[tuple[str, Net]]:
    nets: list[tuple[str, Net]] = []
    for si, site in enumerate(f.sites):
        b = f"spec.sites[{si}]"
        nets += [(f"{b}.pools.ipv4[{i}]", n) for i, n in enumerate(site.ipv4_pools)]
        nets += [(f"{b}.pools.ipv6[{i}]", n) for i, n in enumerate(site.ipv6_pools)]
        for key, net in (("locatorBlock", site.locator_block), ("underlay.ipv4",
                         site.underlay.ipv4), ("underlay.ipv6", site.underlay.ipv6)):
            if net is not None:
                nets.append((f"{b}.{key}", net))
        for ri, rack in enumerate(site.racks):
            for ti, tor in enumerate(rack.tors):
                tp = f"{b}.racks[{ri}].tors[{ti}].peering"
                for fam, iface in (("ipv4", tor.peering.ipv4), ("ipv6", tor.peering.ipv6)):
                    if iface is not None:
                        nets.append((f"{tp}.{fam}", iface.network))
    routers = [*f.wan_routers, *(sp for s in f.sites for sp in s.spines)]
    nets += [(f"router {x.name}.locator", x.locator) for x in routers if x.locator]
    return nets


def _service_nets(s: Services) -> list[tuple[str, Net]]:
    nets: list[tuple[str, Net]] = []
    for i, pool in enumerate(s.pools):
        nets += [(f"{_P}.pools[{i}].ipv4[{j}]", n) for j, n in enumerate(pool.ipv4)]
        nets += [(f"{_P}.pools[{i}].ipv6[{j}]", n) for j, n in enumerate(pool.ipv6)]
    for fam, net in (("ipv4", s.cluster_ips.ipv4), ("ipv6", s.cluster_ips.ipv6)):
        if net is not None:
            nets.append((f"{_P}.clusterIPs.{fam}", net))
    return nets


def _overlap(a: Net, b: Net) -> bool:
    return a.version == b.version and a.overlaps(b)


def _check_overlaps(f: Fabric, r: Reader) -> None:
    mine = _service_nets(f.services)
    theirs = _fabric_nets(f)
    for k, (path, net) in enumerate(mine):
        for other_path, other in [*mine[:k], *theirs]:
            if _overlap(net, other):
                r.error(path, f"overlaps {other} at {other_path}", str(net))


def _check_static(f: Fabric, r: Reader, p: str, svc: StaticService,
                  claimed: dict[Addr, str]) -> None:
    s = f.services
    pool = s.pool(svc.pool) if svc.pool is not None else None
    if svc.pool is not None and pool is None:
        r.error(f"{p}.pool", "unknown pool", svc.pool)
    families: set[int] = set()
    for j, a in enumerate(svc.addresses):
        where = f"{p}.addresses[{j}]"
        holder = s.pool_of(a)
        if holder is None:
            r.error(where, "lies in no service pool (spec.services.pools)", str(a))
        elif pool is not None and holder is not pool:
            r.error(where, f"lies outside pool {pool.name}", str(a))
        if a.version in families:
            r.error(where, "at most one address per family", str(a))
        families.add(a.version)
        _claim(r, where, a, svc.key, claimed)
        pool = pool or holder
    for j, a in enumerate(svc.external_ips):
        where = f"{p}.externalIPs[{j}]"
        if s.pool_of(a) is None:
            r.error(where, "lies in no service pool: the ToRs accept host routes only "
                    "inside the pools", str(a))
        _claim(r, where, a, svc.key, claimed)
    if pool is not None:
        for fam in svc.families:
            if not (pool.ipv4 if fam == 4 else pool.ipv6):
                r.error(f"{p}.families", f"pool {pool.name} has no IPv{fam} prefix",
                        f"ipv{fam}")
    scope = set(pool_nodes(f, pool))
    nodes = {n.name for n in f.nodes}
    for j, pod in enumerate(svc.endpoints):
        where = f"{p}.endpoints[{j}]"
        node = node_of_pod(pod)
        if node is None or node not in nodes:
            r.error(where, "must name a pod as NODE-pN of a node in spec.nodes", pod)
        elif node not in scope:
            r.error(where, f"runs on {node}, outside the scope of pool "
                    f"{pool.name if pool else '?'}", pod)


def _claim(r: Reader, where: str, a: Addr, key: str, claimed: dict[Addr, str]) -> None:
    prev = claimed.get(a)
    if prev is not None and prev != key:
        r.error(where, f"already the address of service {prev}", str(a))
    claimed.setdefault(a, key)
