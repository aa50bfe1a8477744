"""Typed kernel route values the speaker wants or finds: plain, multipath, seg6 and seg6local.

Pure values shared by the reconciler (which diffs them) and the netlink adapter (which writes and
reads them). Interface names, never indexes: the adapter resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

Address = IPv4Address | IPv6Address
Prefix = IPv4Network | IPv6Network

MAIN_TABLE = 254
#: the kind of an unreachable route (the node's own pod blocks: see reconcile.own_blocks)
UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Nexthop:
    """One path of a route: a gateway (any family, RFC 5549 style) and/or an interface."""

    gateway: str | None = None  # kept as text so nexthops sort across families
    ifname: str | None = None

    @property
    def address(self) -> Address | None:
        from ipaddress import ip_address

        return ip_address(self.gateway) if self.gateway else None


@dataclass(frozen=True, slots=True)
class Seg6Encap:
    """`encap seg6 mode MODE segs S1,S2`: segments in travel order (first is visited first)."""

    mode: str  # "encap" | "encap.red" | "inline"
    segments: tuple[IPv6Address, ...]


@dataclass(frozen=True, slots=True)
class Seg6Local:
    """`encap seg6local action ACTION [nh4|nh6|table ...]`."""

    action: str  # RFC 8986 behaviour name as iproute2 spells it: End, End.DX4, ...
    nh4: IPv4Address | None = None
    nh6: IPv6Address | None = None
    table: int | None = None
    vrf_table: int | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """A kernel route we own (protocol ROUTE_PROTOCOL). Identity: (dst, table, metric)."""

    dst: Prefix
    nexthops: tuple[Nexthop, ...] = ()  # sorted; several = ECMP multipath
    encap: Seg6Encap | Seg6Local | None = None
    table: int = MAIN_TABLE
    metric: int = 0
    #: learned | encap | sid | bulk | unreachable (for status and ownership of the diff); an
    #: unreachable route (RTN_UNREACHABLE: the kernel answers ICMP unreachable) has no path
    kind: str = "learned"

    @property
    def key(self) -> tuple[int, str, int, int]:
        return (self.dst.version, str(self.dst), self.table, self.metric)

    def same_as(self, other: Route) -> bool:
        """Equal as the kernel would report it (the kind is ours only, the kernel forgets it;
        but it keeps a route's type: unreachable or not)."""
        unreachable = self.kind == UNREACHABLE
        if unreachable or other.kind == UNREACHABLE:
            return (unreachable == (other.kind == UNREACHABLE) and self.dst == other.dst
                    and self.table == other.table and self.metric == other.metric)
        return (self.dst == other.dst and self.table == other.table
                and self.metric == other.metric and self.encap == other.encap
                and _nh_gateways(self.nexthops) == _nh_gateways(other.nexthops)
                and _nh_devs(self) == _nh_devs(other))


def nh_key(n: Nexthop) -> tuple[str, str]:
    return (n.gateway or "", n.ifname or "")


def sorted_nexthops(nhs: object) -> tuple[Nexthop, ...]:
    return tuple(sorted(nhs, key=nh_key))  # type: ignore[call-overload]


def _nh_gateways(nhs: tuple[Nexthop, ...]) -> tuple[str, ...]:
    return tuple(sorted((n.gateway or "") for n in nhs))


def _nh_devs(r: Route) -> tuple[str, ...]:
    # Devices matter only for gateway-less routes (seg6, seg6local, device routes); for routes
    # through a gateway the kernel fills in the device it resolved, which we do not insist on.
    return tuple(sorted(n.ifname or "" for n in r.nexthops if n.gateway is None))


def route_kind(r: Route) -> str:
    if r.kind == UNREACHABLE:
        return UNREACHABLE
    if isinstance(r.encap, Seg6Local):
        return "sid"
    if isinstance(r.encap, Seg6Encap):
        return "encap"
    return "learned"
