"""Typed values the planner produces: per-node and per-site plans, and the allocation ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from flatroute.fabric.model import BgpOptions, EncapMode, NodeRole

Prefix = IPv4Network | IPv6Network


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


class Behavior(StrEnum):
    """SRv6 endpoint behaviours (RFC 8986) flatroute programs as seg6local routes."""

    END = "End"
    END_DX4 = "End.DX4"
    END_DX6 = "End.DX6"
    END_DT4 = "End.DT4"
    END_DT6 = "End.DT6"
    END_DT46 = "End.DT46"


#: Function part of each SID inside a node locator: locator + function = SID.
FUNCTION = {
    Behavior.END: 0x1,
    Behavior.END_DX4: 0x4,
    Behavior.END_DT6: 0x6,
    Behavior.END_DX6: 0x66,
    Behavior.END_DT4: 0x44,
    Behavior.END_DT46: 0x46,
}


def sid_of(locator: IPv6Network, behavior: Behavior) -> IPv6Address:
    """The SID of `behavior` in `locator` (a router's End SID is sid_of(locator, END))."""
    return IPv6Address(int(locator.network_address) + FUNCTION[behavior])


@dataclass(frozen=True, slots=True)
class Sid:
    sid: IPv6Address
    behavior: Behavior


@dataclass(frozen=True, slots=True)
class UplinkPlan:
    tor: str
    ipv4: IPv4Interface | None
    ipv6: IPv6Interface | None
    unnumbered: bool = False


@dataclass(frozen=True, slots=True)
class PeerPlan:
    """One BGP session from a node to a ToR."""

    tor: str
    asn: int
    address: IPv4Address | IPv6Address | None  # None: unnumbered (link-local on the uplink)
    local_address: IPv4Address | IPv6Address | None
    families: tuple[Family, ...]
    #: IPv6 next hop to send with IPv4 routes on an IPv6 session (RFC 8950)
    ipv6_next_hop: IPv6Address | None = None
    #: BFD on this session (the ToR's, its rack's or the fabric's choice: `Fabric.bfd_on`)
    bfd: bool = False

    @property
    def key(self) -> str:
        return f"{self.tor}/{self.address or 'unnumbered'}"


@dataclass(frozen=True, slots=True)
class Segment:
    """Traffic to `prefix` is encapsulated toward `segments` (last one decapsulates)."""

    prefix: Prefix
    segments: tuple[IPv6Address, ...]
    target: str  # node (or gateway) that decapsulates
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class NodePlan:
    name: str
    site: str
    rack: str
    role: NodeRole
    asn: int | None
    router_id: IPv4Address | None
    uplinks: tuple[UplinkPlan, ...]
    peers: tuple[PeerPlan, ...]
    ipv4_blocks: tuple[IPv4Network, ...]
    ipv6_blocks: tuple[IPv6Network, ...]
    locator: IPv6Network | None
    sids: tuple[Sid, ...]
    #: auto | kernel | bpf: the fabric's spec.srv6.datapath or the node's own
    srv6_datapath: str = "auto"

    def sid(self, behavior: Behavior) -> IPv6Address | None:
        for s in self.sids:
            if s.behavior is behavior:
                return s.sid
        return None

    @property
    def announcements(self) -> tuple[Prefix, ...]:
        """Exactly what the node announces: its pod blocks and its locator, never /32s."""
        extra: tuple[Prefix, ...] = (self.locator,) if self.locator else ()
        return (*self.ipv4_blocks, *self.ipv6_blocks, *extra)


@dataclass(frozen=True, slots=True)
class SitePlan:
    name: str
    aggregates: tuple[Prefix, ...]
    locator_block: IPv6Network | None
    gateways: tuple[str, ...]
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Srv6Settings:
    enabled: bool
    encap_mode: EncapMode
    #: the source address of encapsulated packets is chosen per node (its End SID)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the planner could not do, reported instead of crashing (e.g. exhaustion)."""

    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.node}: {self.message}"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    asn: int | None = None
    ipv4_blocks: tuple[str, ...] = ()
    ipv6_blocks: tuple[str, ...] = ()
    locator: str | None = None
    uplinks: tuple[tuple[str, str | None, str | None], ...] = ()  # (tor, ipv4, ipv6)
    retired_at: str | None = None  # set when the node left the fabric; freed after a grace


@dataclass(frozen=True, slots=True)
class Ledger:
    """Every allocation ever handed out and not yet freed: the planner's memory."""

    nodes: dict[str, LedgerEntry] = field(default_factory=dict)
    racks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Plan:
    fabric: str
    mtu: int
    #: the fabric's BGP settings as they are (one value type from the fabric file to the node)
    bgp: BgpOptions
    srv6: Srv6Settings
    nodes: tuple[NodePlan, ...]
    sites: tuple[SitePlan, ...]
    ledger: Ledger
    problems: tuple[Problem, ...] = ()
    #: planner-internal memo for incremental re-planning; not part of the plan's value
    memo: dict[str, tuple[object, NodePlan]] = field(default_factory=dict, compare=False,
                                                     repr=False)

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def site(self, name: str) -> SitePlan:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)
