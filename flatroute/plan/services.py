"""Which node announces which Service address, and why: the pure endpoint -> route decision.

- `externalTrafficPolicy: Cluster`: every node in the scope of the address's pool announces
  it, as long as the Service has a ready endpoint somewhere (else nobody attracts traffic
  that would be dropped);
- `Local`: only the nodes in scope with a ready endpoint of their own; a node withdraws when
  its last ready endpoint goes and announces again when one returns;
- the ClusterIP range (`spec.services.clusterIPs`): every node announces it, as one
  aggregate per family.
Each route carries its reason (the service, and why this node), shown by the speaker's
status, the NodeState status and the metrics.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flatroute.fabric.model import Fabric
from flatroute.fabric.service_checks import node_of_pod, pool_nodes
from flatroute.fabric.services import Addr, ServicePool, Source, StaticService, TrafficPolicy
from flatroute.plan.model import Prefix
from flatroute.plan.service_alloc import Allocation, Request

#: the `service` of the ClusterIP aggregate routes
CLUSTER_IP_SERVICE = "ClusterIP range"


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    """One service route a node announces: a /32, a /128 or the ClusterIP aggregate."""

    prefix: Prefix
    service: str  # namespace/name, or CLUSTER_IP_SERVICE
    source: Source
    reason: str
    communities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceView:
    """What the decision needs of one Service (static, or read from Kubernetes)."""

    key: str  # namespace/name
    policy: TrafficPolicy
    load_balancer: tuple[Addr, ...] = ()
    external_ips: tuple[Addr, ...] = ()
    #: ready endpoints per node name
    ready: Mapping[str, int] = field(default_factory=dict)


def host_prefix(a: Addr) -> Prefix:
    if a.version == 4:
        return ipaddress.IPv4Network(f"{a}/32")
    return ipaddress.IPv6Network(f"{a}/128")


def decide(fabric: Fabric, services: Sequence[ServiceView]) -> dict[str, tuple[ServiceRoute, ...]]:
    """Every node's service routes, sorted; nodes announcing none are absent."""
    spec = fabric.services
    out: dict[str, list[ServiceRoute]] = {}
    for net in spec.cluster_ips.networks:
        comms = spec.communities_for(Source.CLUSTER_IP, None)
        for n in fabric.nodes:
            out.setdefault(n.name, []).append(ServiceRoute(
                net, CLUSTER_IP_SERVICE, Source.CLUSTER_IP,
                "ClusterIP range: every node announces the aggregate", comms))
    scopes: dict[str | None, tuple[str, ...]] = {}
    for svc in services:
        anywhere = sum(svc.ready.values())
        addrs = [(a, Source.LOAD_BALANCER) for a in svc.load_balancer]
        addrs += [(a, Source.EXTERNAL_IP) for a in svc.external_ips]
        for a, source in addrs:
            pool = spec.pool_of(a)
            key = pool.name if pool is not None else None
            if key not in scopes:
                scopes[key] = pool_nodes(fabric, pool)
            comms = spec.communities_for(source, pool)
            for node, reason in _announcers(svc, pool, scopes[key], anywhere):
                out.setdefault(node, []).append(
                    ServiceRoute(host_prefix(a), svc.key, source, reason, comms))
    return {n: tuple(sorted(set(rs), key=route_key)) for n, rs in out.items()}


def route_key(r: ServiceRoute) -> tuple[int, int, int, str, str]:
    return (r.prefix.version, int(r.prefix.network_address), r.prefix.prefixlen, r.service,
            r.source.value)


def _announcers(svc: ServiceView, pool: ServicePool | None, scope: Sequence[str],
                anywhere: int) -> list[tuple[str, str]]:
    where = f"pool {pool.name}" if pool is not None else "no pool"
    if svc.policy is TrafficPolicy.LOCAL:
        return [(n, f"Local: {svc.ready[n]} ready endpoint(s) on this node ({where})")
                for n in scope if svc.ready.get(n, 0) > 0]
    if anywhere == 0:
        return []
    return [(n, f"Cluster: node in the scope of {where}, {anywhere} ready endpoint(s)")
            for n in scope]


# -- static mode -----------------------------------------------------------------------------
def static_requests(fabric: Fabric) -> list[Request]:
    """The LoadBalancer allocations the fabric's static services ask for."""
    out = []
    for s in fabric.services.static:
        if s.pool is None and not s.addresses:
            continue  # ExternalIP only
        out.append(Request(s.key, (s.pool,) if s.pool else (), s.addresses, s.families))
    return out


def static_views(fabric: Fabric, allocations: Mapping[str, Allocation]) -> list[ServiceView]:
    """Static services as the decision sees them: every listed endpoint is ready."""
    return [_view(s, allocations.get(s.key)) for s in fabric.services.static]


def _view(s: StaticService, alloc: Allocation | None) -> ServiceView:
    ready: dict[str, int] = {}
    for pod in s.endpoints:
        node = node_of_pod(pod)
        if node is not None:
            ready[node] = ready.get(node, 0) + 1
    return ServiceView(s.key, s.policy, alloc.addresses if alloc else (), s.external_ips,
                       ready)
