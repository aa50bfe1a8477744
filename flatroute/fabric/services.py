"""`spec.services`: what the nodes may announce for Services, as typed values, and its reader.

The fabric says which addresses Services may have (LoadBalancer pools, each optionally limited
to some sites or racks), which communities go with each source (LoadBalancer, ExternalIP, the
ClusterIP range as one aggregate), and, in static mode, the services themselves. Whole-document
rules (overlaps, scopes, endpoints) are `flatroute.fabric.service_checks`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flatroute.fabric.reader import Reader

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

#: spec.services.loadBalancerClass: the `spec.loadBalancerClass` a Service names to be ours
LOAD_BALANCER_CLASS = "flatroute.dev/bgp"
#: the namespace of a static service that names none
STATIC_NAMESPACE = "default"


class Source(StrEnum):
    """Where a Service address comes from; each source has its own communities."""

    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_IP = "ExternalIP"
    CLUSTER_IP = "ClusterIP"


class TrafficPolicy(StrEnum):
    """`spec.externalTrafficPolicy`: Cluster (every node in scope) or Local (nodes with a
    ready endpoint of their own)."""

    CLUSTER = "Cluster"
    LOCAL = "Local"


@dataclass(frozen=True, slots=True)
class SourceCommunities:
    """Standard communities per source, attached to every route of that source."""

    load_balancer: tuple[str, ...] = ()
    external_ip: tuple[str, ...] = ()
    cluster_ip: tuple[str, ...] = ()

    def of(self, source: Source) -> tuple[str, ...]:
        if source is Source.LOAD_BALANCER:
            return self.load_balancer
        if source is Source.EXTERNAL_IP:
            return self.external_ip
        return self.cluster_ip


@dataclass(frozen=True, slots=True)
class ServicePool:
    """Addresses Services may get (LoadBalancer) or carry (ExternalIP)."""

    name: str
    ipv4: tuple[ipaddress.IPv4Network, ...] = ()
    ipv6: tuple[ipaddress.IPv6Network, ...] = ()
    #: limit the pool to these sites / racks (both empty: everywhere)
    sites: tuple[str, ...] = ()
    racks: tuple[str, ...] = ()
    communities: SourceCommunities = field(default_factory=SourceCommunities)
    #: hand addresses out to Services that name no pool (False: only on request)
    auto_assign: bool = True
    #: Kubernetes: Services whose labels include all of these get this pool
    service_selector: tuple[tuple[str, str], ...] = ()

    def selects(self, labels: dict[str, str]) -> bool:
        return bool(self.service_selector) and all(labels.get(k) == v
                                                   for k, v in self.service_selector)

    @property
    def networks(self) -> tuple[Net, ...]:
        return (*self.ipv4, *self.ipv6)

    def contains(self, address: Addr) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    protocol: str = "TCP"
    #: the pod's port (defaults to `port`)
    target_port: int | None = None


@dataclass(frozen=True, slots=True)
class StaticService:
    """A service listed in the fabric (static mode and the lab)."""

    name: str
    namespace: str = STATIC_NAMESPACE
    #: the pool to allocate from (None with `addresses`: the pool holding them)
    pool: str | None = None
    #: requested LoadBalancer addresses (at most one per family)
    addresses: tuple[Addr, ...] = ()
    #: the families to allocate from `pool` when no address is given (empty: the pool's)
    families: tuple[int, ...] = ()
    external_ips: tuple[Addr, ...] = ()
    policy: TrafficPolicy = TrafficPolicy.CLUSTER
    #: pod names, NODE-pN as the lab names its pods
    endpoints: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ClusterIPRange:
    ipv4: ipaddress.IPv4Network | None = None
    ipv6: ipaddress.IPv6Network | None = None

    @property
    def networks(self) -> tuple[Net, ...]:
        return tuple(n for n in (self.ipv4, self.ipv6) if n is not None)


@dataclass(frozen=True, slots=True)
class Services:
    pools: tuple[ServicePool, ...] = ()
    communities: SourceCommunities = field(default_factory=SourceCommunities)
    cluster_ips: ClusterIPRange = field(default_factory=ClusterIPRange)
    static: tuple[StaticService, ...] = ()
    load_balancer_class: str = LOAD_BALANCER_CLASS
    #: Services of type LoadBalancer without a class are ours too
    default_class: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.pools or self.cluster_ips.networks)

    def pool(self, name: str) -> ServicePool | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None

    def pool_of(self, address: Addr) -> ServicePool | None:
        for p in self.pools:
            if p.contains(address):
                return p
        return None

    def communities_for(self, source: Source, pool: ServicePool | None) -> tuple[str, ...]:
        """The source's communities, then the pool's own for that source, each once."""
        extra = pool.communities.of(source) if pool is not None else ()
        return tuple(dict.fromkeys((*self.communities.of(source), *extra)))


# -- the reader ------------------------------------------------------------------------------
_KEYS = {"pools", "communities", "clusterIPs", "static", "loadBalancerClass", "default"}
_COMMUNITY_KEYS = {"loadBalancer", "externalIP", "clusterIP"}


def read_services(r: Reader, raw: Any) -> Services:
    """`spec.services` -> Services, recording every problem in `r` with its field path."""
    p = "spec.services"
    if raw is None:
        return Services()
    m = r.mapping(raw, p, _KEYS)
    if m is None:
        return Services()
    pools = tuple(x for pp, item in r.items(m.get("pools"), f"{p}.pools")
                  if (x := _pool(r, item, pp)) is not None)
    cr = r.mapping(m.get("clusterIPs") or {}, f"{p}.clusterIPs", {"ipv4", "ipv6"})
    cluster = ClusterIPRange(r.get(cr, "ipv4", f"{p}.clusterIPs", r.net4),
                             r.get(cr, "ipv6", f"{p}.clusterIPs", r.net6))
    static = tuple(st for sp, item in r.items(m.get("static"), f"{p}.static")
                   if (st := _static(r, item, sp)) is not None)
    cls = r.get(m, "loadBalancerClass", p, r.string, default=LOAD_BALANCER_CLASS)
    default = r.get(m, "default", p, r.boolean, default=False)
    return Services(pools, communities(r, m.get("communities"), f"{p}.communities"),
                    cluster, static, cls or LOAD_BALANCER_CLASS, bool(default))


def communities(r: Reader, raw: Any, p: str) -> SourceCommunities:
    if raw is None:
        return SourceCommunities()
    m = r.mapping(raw, p, _COMMUNITY_KEYS)
    return SourceCommunities(*(
        tuple(c for cp, item in r.items(m.get(key) if m else None, f"{p}.{key}")
              if (c := community(r, item, cp)) is not None)
        for key in ("loadBalancer", "externalIP", "clusterIP")))


def community(r: Reader, value: Any, path: str) -> str | None:
    s = r.string(value, path)
    if s is None:
        return None
    a, sep, b = s.partition(":")
    if not sep or not all(x.isdigit() and int(x) <= 65535 for x in (a, b)):
        r.error(path, "must be a standard community like 65000:100", s)
        return None
    return s


def _pool(r: Reader, raw: Any, p: str) -> ServicePool | None:
    m = r.mapping(raw, p, {"name", "ipv4", "ipv6", "sites", "racks", "communities",
                           "autoAssign", "serviceSelector"})
    name = r.get(m, "name", p, r.name, required=True)
    v4 = r.get(m, "ipv4", p, r.net_list(r.net4)) or ()
    v6 = r.get(m, "ipv6", p, r.net_list(r.net6)) or ()
    if m is not None and not v4 and not v6:
        r.error(p, "a pool needs at least one ipv4 or ipv6 prefix")
    sites = r.get(m, "sites", p, r.net_list(r.name)) or ()
    racks = r.get(m, "racks", p, r.net_list(r.name)) or ()
    comms = communities(r, m.get("communities") if m else None, f"{p}.communities")
    auto = r.get(m, "autoAssign", p, r.boolean, default=True)
    sel = r.mapping(m.get("serviceSelector") or {} if m else {}, f"{p}.serviceSelector",
                    {"matchLabels"})
    labels = r.mapping((sel or {}).get("matchLabels") or {}, f"{p}.serviceSelector.matchLabels",
                       None)
    selector = tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items()))
    if name is None:
        return None
    return ServicePool(name, v4, v6, sites, racks, comms, bool(auto), selector)


def _addr(r: Reader, value: Any, path: str) -> Addr | None:
    if isinstance(value, str) and ":" in value:
        return r.ipv6(value, path)
    return r.ipv4(value, path)


def _addrs(r: Reader, m: dict[str, Any] | None, key: str, p: str) -> tuple[Addr, ...]:
    out: list[Addr] = []
    for ap, item in r.items(m.get(key) if m else None, f"{p}.{key}"):
        a = _addr(r, item, ap)
        if a is not None:
            out.append(a)
    return tuple(out)


def _static(r: Reader, raw: Any, p: str) -> StaticService | None:
    m = r.mapping(raw, p, {"name", "namespace", "pool", "addresses", "families", "externalIPs",
                           "externalTrafficPolicy", "endpoints", "ports"})
    name = r.get(m, "name", p, r.name, required=True)
    ns = r.get(m, "namespace", p, r.name, default=STATIC_NAMESPACE)
    pool = r.get(m, "pool", p, r.name)
    addresses = _addrs(r, m, "addresses", p)
    fams = r.get(m, "families", p, r.net_list(r.choice(["ipv4", "ipv6"]))) or ()
    ext = _addrs(r, m, "externalIPs", p)
    policy = r.get(m, "externalTrafficPolicy", p, r.choice([x.value for x in TrafficPolicy]),
                   default=TrafficPolicy.CLUSTER.value)
    endpoints = r.get(m, "endpoints", p, r.net_list(r.name)) or ()
    ports = tuple(x for pp, item in r.items(m.get("ports") if m else None, f"{p}.ports")
                  if (x := _port(r, item, pp)) is not None)
    if m is not None and pool is None and not addresses and not ext:
        r.error(p, "give a pool, addresses or externalIPs")
    if name is None:
        return None
    return StaticService(name, ns or STATIC_NAMESPACE, pool, addresses,
                         tuple(4 if f == "ipv4" else 6 for f in fams), ext,
                         TrafficPolicy(policy or TrafficPolicy.CLUSTER.value), endpoints, ports)


def _port(r: Reader, raw: Any, p: str) -> ServicePort | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        port = r.integer(raw, p, 1, 65535)
        return ServicePort(port) if port is not None else None
    m = r.mapping(raw, p, {"port", "protocol", "targetPort"})
    port = r.get(m, "port", p, r.int_in(1, 65535), required=True)
    proto = r.get(m, "protocol", p, r.choice(["TCP", "UDP", "SCTP"]), default="TCP")
    target = r.get(m, "targetPort", p, r.int_in(1, 65535))
    if port is None:
        return None
    return ServicePort(port, proto or "TCP", target)
