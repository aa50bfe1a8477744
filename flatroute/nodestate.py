"""NodeState: the desired state the controller publishes for one node, and speakers apply.

It is published as a JSON document (a file in static mode, a custom resource's spec in
Kubernetes mode). Parsing validates everything at the boundary; a speaker never sees a dict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_network,
)
from typing import Any

from flatroute.errors import InvalidInput, field_error
from flatroute.plan.model import Behavior, Family, NodePlan, Plan, Prefix

API_VERSION = "flatroute.dev/v1"
KIND = "NodeState"


@dataclass(frozen=True, slots=True)
class PeerSpec:
    name: str  # the ToR's name
    asn: int
    address: IPv4Address | IPv6Address | None  # None: unnumbered, over the uplink's link-local
    local_address: IPv4Address | IPv6Address | None
    families: tuple[Family, ...]
    ipv6_next_hop: IPv6Address | None = None
    interface: str | None = None


@dataclass(frozen=True, slots=True)
class UplinkSpec:
    tor: str
    ipv4: IPv4Interface | None
    ipv6: IPv6Interface | None
    unnumbered: bool = False


@dataclass(frozen=True, slots=True)
class BgpSpec:
    hold_time: int
    keepalive: int
    graceful_restart: int
    md5_file: str | None
    md5_kubernetes: tuple[str, str] | None
    communities: tuple[str, ...]
    bfd: bool
    bfd_min_rx_ms: int = 300
    bfd_min_tx_ms: int = 300
    bfd_multiplier: int = 3


@dataclass(frozen=True, slots=True)
class LocalSid:
    sid: IPv6Address
    behavior: Behavior


@dataclass(frozen=True, slots=True)
class EncapRoute:
    prefix: Prefix
    segments: tuple[IPv6Address, ...]
    target: str
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class NodeState:
    node: str
    fabric: str
    site: str
    rack: str
    role: str
    asn: int
    router_id: IPv4Address
    bgp: BgpSpec
    uplinks: tuple[UplinkSpec, ...]
    peers: tuple[PeerSpec, ...]
    ipv4_blocks: tuple[Prefix, ...]
    ipv6_blocks: tuple[Prefix, ...]
    mtu: int
    srv6_enabled: bool
    encap_mode: str
    locator: Prefix | None
    local_sids: tuple[LocalSid, ...]
    encap_routes: tuple[EncapRoute, ...]
    #: auto | kernel | bpf: the SRv6 datapath asked for (auto: chosen by the node's probe)
    srv6_datapath: str = "auto"

    @property
    def announce(self) -> tuple[Prefix, ...]:
        """Exactly the node's aggregates and its locator: never a /32."""
        loc: tuple[Prefix, ...] = (self.locator,) if self.locator is not None else ()
        return (*self.ipv4_blocks, *self.ipv6_blocks, *loc)

    @property
    def source_address(self) -> IPv6Address | None:
        """The outer source address of packets this node encapsulates: its End SID."""
        for s in self.local_sids:
            if s.behavior is Behavior.END:
                return s.sid
        return None


# -- from a plan -------------------------------------------------------------------------------
def from_plan(plan: Plan, node: NodePlan) -> NodeState:
    site = plan.site(node.site)
    b = plan.bgp
    md5_file = b.md5.file if b.md5 else None
    md5_k8s = ((b.md5.kubernetes_name or "", b.md5.kubernetes_key or "password")
               if b.md5 and b.md5.kubernetes_name else None)
    return NodeState(
        node=node.name, fabric=plan.fabric, site=node.site, rack=node.rack,
        role=node.role.value, asn=node.asn or 0,
        router_id=node.router_id or IPv4Address(0),
        bgp=BgpSpec(b.hold_time, b.keepalive, b.graceful_restart, md5_file, md5_k8s,
                    b.communities, b.bfd, b.bfd_min_rx_ms, b.bfd_min_tx_ms, b.bfd_multiplier),
        uplinks=tuple(UplinkSpec(u.tor, u.ipv4, u.ipv6, u.unnumbered) for u in node.uplinks),
        peers=tuple(PeerSpec(p.tor, p.asn, p.address, p.local_address, p.families,
                             p.ipv6_next_hop) for p in node.peers),
        ipv4_blocks=node.ipv4_blocks, ipv6_blocks=node.ipv6_blocks, mtu=plan.mtu,
        srv6_enabled=plan.srv6.enabled, encap_mode=plan.srv6.encap_mode.value,
        locator=node.locator,
        local_sids=tuple(LocalSid(s.sid, s.behavior) for s in node.sids),
        encap_routes=tuple(EncapRoute(s.prefix, s.segments, s.target, s.policy)
                           for s in site.segments),
        srv6_datapath=node.srv6_datapath,
    )


# -- to and from JSON --------------------------------------------------------------------------
def _s(v: object) -> str | None:
    return None if v is None else str(v)


def spec_doc(st: NodeState) -> dict[str, Any]:
    b = st.bgp
    return {
        "node": st.node, "fabric": st.fabric, "site": st.site, "rack": st.rack,
        "role": st.role, "asn": st.asn, "routerId": str(st.router_id), "mtu": st.mtu,
        "bgp": {
            "holdTime": b.hold_time, "keepalive": b.keepalive,
            "gracefulRestart": b.graceful_restart,
            "md5": ({"file": b.md5_file} if b.md5_file else
                    {"kubernetesSecret": {"name": b.md5_kubernetes[0],
                                          "key": b.md5_kubernetes[1]}}
                    if b.md5_kubernetes else None),
            "communities": list(b.communities),
            "bfd": ({"minRx": b.bfd_min_rx_ms, "minTx": b.bfd_min_tx_ms,
                     "multiplier": b.bfd_multiplier} if b.bfd else None),
        },
        "uplinks": [{"tor": u.tor, "ipv4": _s(u.ipv4), "ipv6": _s(u.ipv6),
                     "unnumbered": u.unnumbered} for u in st.uplinks],
        "peers": [{"name": p.name, "asn": p.asn, "address": _s(p.address),
                   "localAddress": _s(p.local_address), "families": [f.value for f in p.families],
                   "ipv6NextHop": _s(p.ipv6_next_hop), "interface": p.interface}
                  for p in st.peers],
        "podBlocks": {"ipv4": [str(x) for x in st.ipv4_blocks],
                      "ipv6": [str(x) for x in st.ipv6_blocks]},
        "srv6": {
            "enabled": st.srv6_enabled, "encapMode": st.encap_mode,
            "datapath": st.srv6_datapath, "locator": _s(st.locator),
            "localSids": [{"sid": str(s.sid), "behavior": s.behavior.value}
                          for s in st.local_sids],
            "routes": routes_doc(st.encap_routes),
        },
    }


def routes_doc(routes: Iterable[EncapRoute]) -> list[dict[str, Any]]:
    """The `spec.srv6.routes` member: every node of a site carries the same ones."""
    return [{"prefix": str(r.prefix), "segments": [str(x) for x in r.segments],
             "target": r.target, "policy": r.policy} for r in routes]


def to_json(st: NodeState) -> str:
    """The published document: canonical compact JSON (sorted keys), one line.

    Compact because a controller publishes thousands of these (with every remote segment in
    each): indentation tripled their size and their write time. Read them with `jq`.
    """
    spec = spec_doc(st)
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": st.node},
           "spec": spec, "generation": spec_hash(spec)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


def spec_hash(spec: dict[str, Any]) -> str:
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def from_json(text: str, source: str = "<node state>") -> NodeState:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidInput([field_error(source, "", f"not valid JSON: {exc}")]) from exc
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise InvalidInput([field_error(source, "kind", f"must be {KIND}",
                                        doc.get("kind") if isinstance(doc, dict) else doc)])
    return from_spec(doc.get("spec"), source)


def from_spec(spec: Any, source: str = "<node state>") -> NodeState:
    """Validate a NodeState spec; raises InvalidInput naming the field."""
    path = ["spec"]

    def fail(msg: str, value: object = None) -> InvalidInput:
        return InvalidInput([field_error(source, ".".join(path), msg, value)])

    def get(obj: Any, key: str) -> Any:
        if not isinstance(obj, dict):
            raise fail("must be a mapping", obj)
        return obj.get(key)

    try:
        b = get(spec, "bgp") or {}
        md5 = b.get("md5") or {}
        bfd = b.get("bfd")
        path.append("bgp")
        bgp = BgpSpec(int(b.get("holdTime", 9)), int(b.get("keepalive", 3)),
                      int(b.get("gracefulRestart", 120)), md5.get("file"),
                      (md5["kubernetesSecret"]["name"], md5["kubernetesSecret"]["key"])
                      if md5.get("kubernetesSecret") else None,
                      tuple(b.get("communities") or ()), bfd is not None,
                      int((bfd or {}).get("minRx", 300)), int((bfd or {}).get("minTx", 300)),
                      int((bfd or {}).get("multiplier", 3)))
        path[-1] = "uplinks"
        uplinks = tuple(
            UplinkSpec(str(u["tor"]), IPv4Interface(u["ipv4"]) if u.get("ipv4") else None,
                       IPv6Interface(u["ipv6"]) if u.get("ipv6") else None,
                       bool(u.get("unnumbered")))
            for u in get(spec, "uplinks") or ())
        peers = []
        for i, p in enumerate(get(spec, "peers") or ()):
            path[-1] = f"peers[{i}]"
            peers.append(PeerSpec(
                str(p["name"]), int(p["asn"]),
                ip_address(p["address"]) if p.get("address") else None,
                ip_address(p["localAddress"]) if p.get("localAddress") else None,
                tuple(Family(x) for x in p.get("families") or ()),
                IPv6Address(p["ipv6NextHop"]) if p.get("ipv6NextHop") else None,
                p.get("interface")))
        path[-1] = "podBlocks"
        blocks = get(spec, "podBlocks") or {}
        b4 = tuple(ip_network(x) for x in blocks.get("ipv4") or ())
        b6 = tuple(ip_network(x) for x in blocks.get("ipv6") or ())
        path[-1] = "srv6"
        srv6 = get(spec, "srv6") or {}
        sids = []
        for i, s in enumerate(srv6.get("localSids") or ()):
            path[-1] = f"srv6.localSids[{i}]"
            sids.append(LocalSid(IPv6Address(s["sid"]), Behavior(s["behavior"])))
        routes = []
        for i, r in enumerate(srv6.get("routes") or ()):
            path[-1] = f"srv6.routes[{i}]"
            segs = tuple(IPv6Address(x) for x in r["segments"])
            if not segs:
                raise fail("needs at least one segment")
            routes.append(EncapRoute(ip_network(r["prefix"]), segs, str(r.get("target", "")),
                                     r.get("policy")))
        path[-1] = "srv6.encapMode"
        mode = str(srv6.get("encapMode", "encap"))
        if mode not in ("encap", "encap.red"):
            raise fail("must be encap or encap.red", mode)
        path[-1] = "srv6.datapath"
        datapath = str(srv6.get("datapath", "auto"))
        if datapath not in ("auto", "kernel", "bpf"):
            raise fail("must be auto, kernel or bpf", datapath)
        path.pop()
        rid = get(spec, "routerId")
        node = get(spec, "node")
        if not node:
            path.append("node")
            raise fail("is required")
        return NodeState(
            node=str(node), fabric=str(get(spec, "fabric") or ""),
            site=str(get(spec, "site") or ""), rack=str(get(spec, "rack") or ""),
            role=str(get(spec, "role") or "worker"), asn=int(get(spec, "asn")),
            router_id=IPv4Address(rid), bgp=bgp, uplinks=uplinks, peers=tuple(peers),
            ipv4_blocks=b4, ipv6_blocks=b6, mtu=int(get(spec, "mtu") or 1500),
            srv6_enabled=bool(srv6.get("enabled")), encap_mode=mode,
            locator=ip_network(srv6["locator"]) if srv6.get("locator") else None,
            local_sids=tuple(sids), encap_routes=tuple(routes), srv6_datapath=datapath,
        )
    except InvalidInput:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise fail(f"malformed: {exc}") from exc
