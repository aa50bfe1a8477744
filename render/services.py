"""The ToR side of Service routes, platform-neutral: what a node may announce, and how many.

A ToR accepts from a node exactly its pod blocks, its locator and, for the service pools whose
scope holds the node, host routes inside the pools (/32, /128: `ge`/`le` the host length) and
the ClusterIP aggregates (exact). Nothing else, ever: a /32 outside the pools is refused. The
same service rules go up the site (ToR -> spine -> ToR) so clients behind the spines reach the
services. The maximum-prefix limit grows by what the services may add: the addresses of the
pools in scope (at most SERVICE_ROUTES_CAP) and the ClusterIP aggregates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from flatroute.fabric.model import Fabric
from flatroute.fabric.service_checks import pool_nodes
from flatroute.fabric.services import Net, ServicePool
from flatroute.plan.model import NodePlan

#: one prefix-list entry: (prefix, ge, le), None for an exact match (render.view.Rule's fields)
Entry = tuple[Net, int | None, int | None]

#: the most service host routes counted toward one node's maximum-prefix (a pool may be huge)
SERVICE_ROUTES_CAP = 10000


def _host_rule(net: Net) -> Entry:
    host = net.max_prefixlen
    return (net, None, None) if net.prefixlen == host else (net, host, host)


def _rules(fabric: Fabric, pools: Iterable[ServicePool], version: int) -> list[Entry]:
    out = [_host_rule(n) for p in pools for n in p.networks if n.version == version]
    out += [(n, None, None) for n in fabric.services.cluster_ips.networks
            if n.version == version]
    return out


def node_pools(fabric: Fabric, node: str) -> list[ServicePool]:
    return [p for p in fabric.services.pools if node in pool_nodes(fabric, p)]


def node_rules(fabric: Fabric, node: str, version: int) -> list[Entry]:
    """The service rules of a node's inbound list on its ToR."""
    return _rules(fabric, node_pools(fabric, node), version)


def site_rules(fabric: Fabric, site: str, version: int) -> list[Entry]:
    """The service rules carried between the site's ToRs and spines."""
    racks = fabric.racks()
    nodes = {n.name for n in fabric.nodes if n.rack in racks and racks[n.rack].site == site}
    pools = [p for p in fabric.services.pools if nodes & set(pool_nodes(fabric, p))]
    return _rules(fabric, pools, version)


def _capacity(pools: Sequence[ServicePool]) -> int:
    return sum(n.num_addresses for p in pools for n in p.networks)


def max_prefixes(fabric: Fabric, nodes: Iterable[NodePlan]) -> int:
    """The ToR's maximum-prefix per node session: `spec.bgp.maxPrefixes` plus what the
    services may add for the node in the ToR's rack that may add the most."""
    base = fabric.bgp.max_prefixes
    if not fabric.services.enabled:
        return base
    extra = 0
    for n in nodes:
        routes = min(_capacity(node_pools(fabric, n.name)), SERVICE_ROUTES_CAP)
        extra = max(extra, routes + len(fabric.services.cluster_ips.networks))
    return base + extra
