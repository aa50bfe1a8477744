"""Typed, frozen values of a validated fabric description (apiVersion flatroute.dev/v1).

Nothing here parses; `flatroute.fabric.parse` turns a document into these values and
`flatroute.fabric.checks` guarantees every cross-reference below resolves.
"""

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

from flatroute.fabric.services import Services

API_VERSION = "flatroute.dev/v1"
KIND = "Fabric"


class Platform(StrEnum):
    FRR = "frr"
    SONIC = "sonic"
    EOS = "eos"
    NXOS = "nxos"
    JUNOS = "junos"


class AsnMode(StrEnum):
    PER_NODE = "per-node"
    PER_RACK = "per-rack"
    CLUSTER = "cluster"


class EncapMode(StrEnum):
    ENCAP = "encap"
    ENCAP_RED = "encap.red"


class SidFormat(StrEnum):
    """spec.srv6.format: classic 128-bit SIDs, or compressed micro-SIDs (RFC 9800 NEXT-C-SID)
    in the F3216 layout: a 32-bit locator block, 16-bit node IDs, 16-bit functions."""

    FULL = "full"
    USID_F3216 = "usid-f3216"


#: F3216: the locator block's length, a uSID's length, and a node's uSID locator's length
USID_BLOCK_LENGTH = 32
USID_BITS = 16
USID_LOCATOR_LENGTH = USID_BLOCK_LENGTH + USID_BITS
#: spec.srv6.nodeIds: the global node IDs (GIB); 0xe000-0xffff is the local range (LIB)
NODE_ID_FIRST = 0x0001
NODE_ID_LAST = 0xDFFF

#: the SRv6 datapaths a node can run (spec.srv6.datapath, nodes[].srv6.datapath)
SRV6_DATAPATHS = ("auto", "kernel", "bpf")

# -- defaults: the one definition, read by the dataclasses below, the loader, the node state,
# the CRD schema's descriptions and the renderers (through the values they are handed) -------
#: spec.bgp.holdTime, seconds
HOLD_TIME = 9
#: spec.bgp.keepalive, seconds (at most a third of the hold time)
KEEPALIVE = 3
#: spec.bgp.gracefulRestart: the restart time advertised, seconds (0 disables)
GRACEFUL_RESTART = 120
#: spec.bgp.maxPrefixes: the maximum-prefix the ToRs apply per node
MAX_PREFIXES = 100
#: spec.bgp.bfd.minRx and minTx, milliseconds
BFD_MIN_RX_MS = 300
BFD_MIN_TX_MS = 300
#: spec.bgp.bfd.multiplier
BFD_MULTIPLIER = 3
#: spec.pods.ipv4BlockSize and ipv6BlockSize: the prefix length of each node's pod block
IPV4_BLOCK_SIZE = 26
IPV6_BLOCK_SIZE = 122
#: spec.pods.mtu: the pod interfaces' MTU
POD_MTU = 1500
#: spec.srv6.locatorLength: each node locator's prefix length
LOCATOR_LENGTH = 64
#: spec.srv6.underlayMtu: the smallest MTU on the encapsulated paths
UNDERLAY_MTU = 1500
#: spec.srv6.datapath
SRV6_DATAPATH = "auto"


class Decap4(StrEnum):
    END_DX4 = "End.DX4"
    END_DT4 = "End.DT4"
    END_DT46 = "End.DT46"


class Decap6(StrEnum):
    END_DT6 = "End.DT6"
    END_DX6 = "End.DX6"
    END_DT46 = "End.DT46"


class SegmentScope(StrEnum):
    NODE = "node"
    SITE = "site"


class NodeRole(StrEnum):
    WORKER = "worker"
    GATEWAY = "gateway"


#: spec.srv6.encapMode, decapIpv4, decapIpv6 and scope (after their enums)
ENCAP_MODE = EncapMode.ENCAP
DECAP_IPV4 = Decap4.END_DX4
DECAP_IPV6 = Decap6.END_DT6
SEGMENT_SCOPE = SegmentScope.NODE
#: spec.bgp.md5.secretRef.kubernetesSecret.key
MD5_SECRET_KEY = "password"


@dataclass(frozen=True, slots=True)
class AsnScheme:
    mode: AsnMode
    range_start: int = 0
    range_end: int = 0
    cluster_asn: int = 0


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where the MD5 secret lives; the secret itself is never in the fabric."""

    file: str | None = None
    kubernetes_name: str | None = None
    kubernetes_key: str | None = None

    def describe(self) -> str:
        if self.file:
            return f"file {self.file}"
        return f"Secret {self.kubernetes_name} key {self.kubernetes_key}"


@dataclass(frozen=True, slots=True)
class Bfd:
    enabled: bool = False
    min_rx_ms: int = BFD_MIN_RX_MS
    min_tx_ms: int = BFD_MIN_TX_MS
    multiplier: int = BFD_MULTIPLIER


@dataclass(frozen=True, slots=True)
class BgpOptions:
    hold_time: int = HOLD_TIME
    keepalive: int = KEEPALIVE
    graceful_restart: int = GRACEFUL_RESTART
    md5: SecretRef | None = None
    communities: tuple[str, ...] = ()
    ipv4_over_ipv6: bool = False
    bfd: Bfd = field(default_factory=Bfd)
    max_prefixes: int = MAX_PREFIXES


@dataclass(frozen=True, slots=True)
class PodOptions:
    ipv4_block_size: int = IPV4_BLOCK_SIZE
    ipv6_block_size: int = IPV6_BLOCK_SIZE
    mtu: int = POD_MTU


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    site: str | None = None
    prefix: IPv4Network | IPv6Network | None = None


@dataclass(frozen=True, slots=True)
class Srv6Policy:
    name: str
    to: PolicyMatch
    waypoints: tuple[str, ...]
    from_site: str | None = None


@dataclass(frozen=True, slots=True)
class Srv6Options:
    enabled: bool = False
    encap_mode: EncapMode = ENCAP_MODE
    decap_ipv4: Decap4 = DECAP_IPV4
    decap_ipv6: Decap6 = DECAP_IPV6
    scope: SegmentScope = SEGMENT_SCOPE
    locator_length: int = LOCATOR_LENGTH
    policies: tuple[Srv6Policy, ...] = ()
    #: the smallest MTU on the paths encapsulated packets take (uplinks, ToRs, spines, WAN)
    underlay_mtu: int = UNDERLAY_MTU
    #: which SRv6 datapath nodes run: `auto` (kernel seg6 where the capability probe finds it
    #: working, else eBPF), `kernel` or `bpf`; a node may override it
    datapath: str = SRV6_DATAPATH
    #: full SIDs, or uSID F3216 (then each node and uSID router gets a 16-bit node ID)
    format: SidFormat = SidFormat.FULL
    #: the uSID locator block of the whole fabric (a site's own locatorBlock wins in it)
    locator_block: IPv6Network | None = None
    #: the node IDs to allocate from, first and last (inclusive)
    node_ids: tuple[int, int] = (NODE_ID_FIRST, NODE_ID_LAST)

    @property
    def usid(self) -> bool:
        return self.format is SidFormat.USID_F3216


@dataclass(frozen=True, slots=True)
class Peering:
    """How a ToR meets its nodes: a server subnet (SVI) per family, or unnumbered."""

    unnumbered: bool = False
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None


@dataclass(frozen=True, slots=True)
class Router:
    """A ToR, spine or WAN router: the network team's side."""

    name: str
    asn: int
    router_id: IPv4Address
    platform: Platform
    peering: Peering = field(default_factory=Peering)
    locator: IPv6Network | None = None
    ports: tuple[tuple[str, str], ...] = ()
    #: ToRs only: BFD on (True) or off (False) for this ToR's sessions; None: the rack's choice
    bfd: bool | None = None
    #: runs uSID behaviours (uN) in a usid-f3216 fabric: takes a node ID from the ledger
    usid: bool = False

    def port_for(self, neighbor: str, default: str) -> str:
        for name, port in self.ports:
            if name == neighbor:
                return port
        return default


@dataclass(frozen=True, slots=True)
class Rack:
    name: str
    site: str
    tors: tuple[Router, ...]
    #: BFD on or off for the rack's ToRs (a ToR's own `bfd` wins); None: spec.bgp.bfd.enabled
    bfd: bool | None = None


def tor_bfd(fabric_enabled: bool, rack: Rack, tor: Router) -> bool:
    """BFD for a ToR's sessions: its own `bfd`, else its rack's, else the fabric's."""
    choice = tor.bfd if tor.bfd is not None else rack.bfd
    return fabric_enabled if choice is None else choice


@dataclass(frozen=True, slots=True)
class Underlay:
    ipv4: IPv4Network | None = None
    ipv6: IPv6Network | None = None


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    ipv4_pools: tuple[IPv4Network, ...]
    ipv6_pools: tuple[IPv6Network, ...]
    locator_block: IPv6Network | None
    underlay: Underlay
    spines: tuple[Router, ...]
    racks: tuple[Rack, ...]


@dataclass(frozen=True, slots=True)
class Uplink:
    tor: str
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None
    #: the prefix length when the address was written with one (`10.0.1.11/24`): it must be
    #: the ToR's peering subnet's (checked with the rack); not part of the value
    ipv4_len: int | None = field(default=None, compare=False)
    ipv6_len: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    rack: str
    role: NodeRole = NodeRole.WORKER
    uplinks: tuple[Uplink, ...] = ()
    asn: int | None = None
    ipv4_blocks: tuple[IPv4Network, ...] = ()
    ipv6_blocks: tuple[IPv6Network, ...] = ()
    router_id: IPv4Address | None = None
    #: this node's SRv6 datapath, overriding spec.srv6.datapath (None: the fabric's)
    srv6_datapath: str | None = None


@dataclass(frozen=True, slots=True)
class Fabric:
    name: str
    asn: AsnScheme
    bgp: BgpOptions
    pods: PodOptions
    srv6: Srv6Options
    wan_routers: tuple[Router, ...]
    sites: tuple[Site, ...]
    nodes: tuple[Node, ...]
    source: str = "<fabric>"
    #: spec.services: Service address pools, communities, static services
    services: Services = field(default_factory=Services)

    # Lookups are cheap enough to compute on demand; the model stays a plain value.
    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    def racks(self) -> dict[str, Rack]:
        return {r.name: r for s in self.sites for r in s.racks}

    def bfd_on(self, router: str) -> bool:
        """Whether `router` runs BFD: a ToR's own `bfd`, else its rack's, else the fabric's
        `spec.bgp.bfd.enabled` (spines and WAN routers follow the fabric). Timers are the
        fabric's. A router link uses BFD only when both its ends do."""
        for s in self.sites:
            for rack in s.racks:
                for t in rack.tors:
                    if t.name == router:
                        return tor_bfd(self.bgp.bfd.enabled, rack, t)
        return self.bgp.bfd.enabled

    def routers(self) -> dict[str, Router]:
        out = {r.name: r for r in self.wan_routers}
        for s in self.sites:
            out.update({r.name: r for r in s.spines})
            for rack in s.racks:
                out.update({t.name: t for t in rack.tors})
        return out
