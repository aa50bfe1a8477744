"""NodeState: the desired state the controller publishes for one node, and speakers apply.

It is published as a JSON document (a file in static mode, a custom resource's spec in
Kubernetes mode). Parsing validates everything at the boundary; a speaker never sees a dict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
)
from typing import Any, cast

from flatroute.errors import InvalidInput, field_error
from flatroute.fabric.model import (
    BFD_MIN_RX_MS,
    BFD_MIN_TX_MS,
    BFD_MULTIPLIER,
    ENCAP_MODE,
    GRACEFUL_RESTART,
    HOLD_TIME,
    KEEPALIVE,
    MAX_PREFIXES,
    POD_MTU,
    SRV6_DATAPATH,
    SRV6_DATAPATHS,
    Bfd,
    BgpOptions,
    EncapMode,
    NodeRole,
    SecretRef,
)
from flatroute.fabric.naming import ifname
from flatroute.fabric.reader import Reader
from flatroute.fabric.services import Source
from flatroute.plan.model import USID_DECAPS, Behavior, Family, NodePlan, Plan, Prefix, Segment, Sid
from flatroute.plan.services import ServiceRoute

API_VERSION = "flatroute.dev/v1"
KIND = "NodeState"
Address = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class PeerSpec:
    name: str  # the ToR's name
    asn: int
    address: IPv4Address | IPv6Address | None  # None: unnumbered, over the uplink's link-local
    local_address: IPv4Address | IPv6Address | None
    families: tuple[Family, ...]
    ipv6_next_hop: IPv6Address | None = None
    interface: str | None = None
    #: BFD on this session (timers: `BgpOptions.bfd`); a peer without BFD is judged by BGP alone
    bfd: bool = False


@dataclass(frozen=True, slots=True)
class UplinkSpec:
    tor: str
    ipv4: IPv4Interface | None
    ipv6: IPv6Interface | None
    unnumbered: bool = False
    #: the node's interface toward the ToR, as the speaker found it (speaker.uplinks); not
    #: part of the published document
    interface: str | None = None


#: one value type per concept across the plan -> node state boundary: a node's SIDs and its
#: encapsulation routes are the plan's own values, carried as they are (no copy, no translation)
LocalSid = Sid
EncapRoute = Segment


@dataclass(frozen=True, slots=True)
class NodeState:
    node: str
    fabric: str
    site: str
    rack: str
    role: str
    asn: int
    router_id: IPv4Address
    #: the fabric's BGP options; `bfd.enabled` here means some peer of this node runs BFD
    bgp: BgpOptions
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
    srv6_datapath: str = SRV6_DATAPATH
    #: the node's Service routes (host routes inside the service pools, the ClusterIP
    #: aggregate), each with its reason; announced beside `announce`, withdrawn first
    services: tuple[ServiceRoute, ...] = ()

    @property
    def announce(self) -> tuple[Prefix, ...]:
        """Exactly the node's aggregates and its locator: never a /32."""
        loc: tuple[Prefix, ...] = (self.locator,) if self.locator is not None else ()
        return (*self.ipv4_blocks, *self.ipv6_blocks, *loc)

    def uplink_device(self, tor: str) -> str:
        """The interface toward `tor`: the one found for it, else the one named after it."""
        for u in self.uplinks:
            if u.tor == tor and u.interface:
                return u.interface
        return ifname(tor)

    @property
    def source_address(self) -> IPv6Address | None:
        """The outer source address of packets this node encapsulates: its End SID (uSID
        format: its own uSID, block:ID::)."""
        for s in self.local_sids:
            if s.behavior is Behavior.END:
                return s.sid
        for s in self.local_sids:
            if s.behavior in USID_DECAPS:
                return s.sid
        return None


# -- from a plan -------------------------------------------------------------------------------
def from_plan(plan: Plan, node: NodePlan,
              services: tuple[ServiceRoute, ...] = ()) -> NodeState:
    site = plan.site(node.site)
    b = plan.bgp
    return NodeState(
        node=node.name, fabric=plan.fabric, site=node.site, rack=node.rack,
        role=node.role.value, asn=node.asn or 0,
        router_id=node.router_id or IPv4Address(0),
        bgp=replace(b, bfd=replace(b.bfd, enabled=any(p.bfd for p in node.peers))),
        uplinks=tuple(UplinkSpec(u.tor, u.ipv4, u.ipv6, u.unnumbered) for u in node.uplinks),
        peers=tuple(PeerSpec(p.tor, p.asn, p.address, p.local_address, p.families,
                             p.ipv6_next_hop, bfd=p.bfd) for p in node.peers),
        ipv4_blocks=node.ipv4_blocks, ipv6_blocks=node.ipv6_blocks, mtu=plan.mtu,
        srv6_enabled=plan.srv6.enabled, encap_mode=plan.srv6.encap_mode.value,
        locator=node.locator,
        local_sids=node.sids,
        encap_routes=site.segments,
        srv6_datapath=node.srv6_datapath,
        services=services,
    )


# -- to and from JSON --------------------------------------------------------------------------
def _s(v: object) -> str | None:
    return None if v is None else str(v)


def _md5_doc(ref: SecretRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    if ref.file:
        return {"file": ref.file}
    return {"kubernetesSecret": {"name": ref.kubernetes_name, "key": ref.kubernetes_key}}


def spec_doc(st: NodeState) -> dict[str, Any]:
    doc = _spec_doc(st)
    if st.services:  # absent when empty: documents of fabrics without services stay as they were
        doc["services"] = services_doc(st.services)
    return doc


def services_doc(routes: Iterable[ServiceRoute]) -> list[dict[str, Any]]:
    return [{"prefix": str(r.prefix), "service": r.service, "source": r.source.value,
             "reason": r.reason, "communities": list(r.communities)} for r in routes]


def _spec_doc(st: NodeState) -> dict[str, Any]:
    b = st.bgp
    return {
        "node": st.node, "fabric": st.fabric, "site": st.site, "rack": st.rack,
        "role": st.role, "asn": st.asn, "routerId": str(st.router_id), "mtu": st.mtu,
        "bgp": {
            "holdTime": b.hold_time, "keepalive": b.keepalive,
            "gracefulRestart": b.graceful_restart,
            "md5": _md5_doc(b.md5),
            "communities": list(b.communities),
            "bfd": ({"minRx": b.bfd.min_rx_ms, "minTx": b.bfd.min_tx_ms,
                     "multiplier": b.bfd.multiplier} if b.bfd.enabled else None),
            "ipv4OverIpv6": b.ipv4_over_ipv6, "maxPrefixes": b.max_prefixes,
        },
        "uplinks": [{"tor": u.tor, "ipv4": _s(u.ipv4), "ipv6": _s(u.ipv6),
                     "unnumbered": u.unnumbered} for u in st.uplinks],
        "peers": [{"name": p.name, "asn": p.asn, "address": _s(p.address),
                   "localAddress": _s(p.local_address), "families": [f.value for f in p.families],
                   "ipv6NextHop": _s(p.ipv6_next_hop), "interface": p.interface,
                   "bfd": p.bfd}
                  for p in st.peers],
        "podBlocks": {"ipv4": [str(x) for x in st.ipv4_blocks],
                      "ipv6": [str(x) for x in st.ipv6_blocks]},
        "srv6": {
            "enabled": st.srv6_enabled, "encapMode": st.encap_mode,
            "datapath": st.srv6_datapath, "locator": _s(st.locator),
            "localSids": [_sid_doc(s) for s in st.local_sids],
            "routes": routes_doc(st.encap_routes),
        },
    }


def _sid_doc(s: LocalSid) -> dict[str, Any]:
    doc: dict[str, Any] = {"sid": str(s.sid), "behavior": s.behavior.value}
    if s.length != 128:  # a uSID: matched as a prefix (absent for full SIDs, as before)
        doc["length"] = s.length
    return doc


def routes_doc(routes: Iterable[EncapRoute]) -> list[dict[str, Any]]:
    """The `spec.srv6.routes` member: every node of a site carries the same ones. In uSID
    format `segments` are the containers (the compressed form on the wire) and `usids` the
    uSIDs they carry."""
    out = []
    for r in routes:
        doc: dict[str, Any] = {"prefix": str(r.prefix), "segments": [str(x) for x in r.segments],
                               "target": r.target, "policy": r.policy}
        if r.usids:
            doc["usids"] = [str(u) for u in r.usids]
        out.append(doc)
    return out


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
    """Validate a NodeState spec; raises InvalidInput naming every bad field by its path.

    It reads through the fabric loader's field-path Reader. Keys it does not know are
    ignored, so that a speaker reads what a newer controller publishes."""
    r = Reader(source)
    state = _NodeStateReader(r).spec(spec)
    if state is None or r.errors:
        raise InvalidInput(r.errors)
    return state


_SPEC = "spec"
def _text(value: Any, path: str) -> str | None:
    """An optional free-text member: any string, empty included (a hand-written or older
    node state may carry "" for fabric, site or rack), as text whatever it is, as before."""
    del path
    return value if isinstance(value, str) else str(value)


#: ranges as in the fabric (and the NodeState CRD schema)
_ANY_ASN = (0, 4294967294)  # 0: a node planned without an ASN


class _NodeStateReader:
    def __init__(self, r: Reader) -> None:
        self.r = r

    def spec(self, raw: Any) -> NodeState | None:
        r, p = self.r, _SPEC
        m = r.mapping(raw, p, None)
        if m is None:
            return None
        bgp = self._bgp(m.get("bgp"))
        uplinks = tuple(u for up, item in r.items(m.get("uplinks"), f"{p}.uplinks")
                        if (u := self._uplink(item, up)) is not None)
        bfd_default = bgp.bfd.enabled if bgp is not None else False  # documents without peers[].bfd
        peers = tuple(x for pp, item in r.items(m.get("peers"), f"{p}.peers")
                      if (x := self._peer(item, pp, bfd_default)) is not None)
        blocks = r.mapping(m.get("podBlocks") or {}, f"{p}.podBlocks", None)
        b4 = r.get(blocks, "ipv4", f"{p}.podBlocks", r.net_list(r.net4)) or ()
        b6 = r.get(blocks, "ipv6", f"{p}.podBlocks", r.net_list(r.net6)) or ()
        srv6 = self._srv6(m.get("srv6"))
        node = r.get(m, "node", p, r.string, required=True)
        asn = r.get(m, "asn", p, r.int_in(*_ANY_ASN), required=True)
        rid = r.get(m, "routerId", p, r.ipv4, required=True)
        text = _text  # fabric, site, rack, role: optional, and may be empty as before
        if node is None or asn is None or rid is None or bgp is None or srv6 is None:
            return None
        enabled, mode, datapath, locator, sids, routes = srv6
        services = tuple(sr for sp, item in r.items(m.get("services"), f"{p}.services")
                         if (sr := self._service(item, sp)) is not None)
        return NodeState(
            node=node, fabric=r.get(m, "fabric", p, text) or "",
            site=r.get(m, "site", p, text) or "", rack=r.get(m, "rack", p, text) or "",
            role=r.get(m, "role", p, text) or NodeRole.WORKER.value, asn=asn,
            router_id=rid, bgp=bgp, uplinks=uplinks, peers=peers,
            ipv4_blocks=b4, ipv6_blocks=b6, mtu=self._int(m, "mtu", p, 1280, 9216, POD_MTU),
            srv6_enabled=enabled, encap_mode=mode, locator=locator,
            local_sids=sids, encap_routes=routes, srv6_datapath=datapath,
            services=services,
        )

    def _int(self, m: dict[str, Any] | None, key: str, path: str, lo: int, hi: int,
             default: int) -> int:
        got = self.r.get(m, key, path, self.r.int_in(lo, hi), default=default)
        return default if got is None else got

    def _bgp(self, raw: Any) -> BgpOptions | None:
        r, p = self.r, f"{_SPEC}.bgp"
        m = r.mapping(raw or {}, p, None)
        if m is None:
            return None
        md5 = r.mapping(m.get("md5") or {}, f"{p}.md5", None)
        md5_file = r.get(md5, "file", f"{p}.md5", r.string)
        kp = f"{p}.md5.kubernetesSecret"
        ks = r.mapping(md5.get("kubernetesSecret"), kp, None) \
            if md5 and md5.get("kubernetesSecret") is not None else None
        kname = r.get(ks, "name", kp, r.string, required=True)
        kkey = r.get(ks, "key", kp, r.string, required=True)
        secret = (SecretRef(file=md5_file) if md5_file else
                  SecretRef(kubernetes_name=kname, kubernetes_key=kkey)
                  if kname is not None and kkey is not None else None)
        comms = r.get(m, "communities", p, r.net_list(r.string)) or ()
        bfd = m.get("bfd")  # present: some peer runs BFD, with these timers
        bm = r.mapping(bfd, f"{p}.bfd", None) if bfd is not None else None
        return BgpOptions(
            self._int(m, "holdTime", p, 3, 65535, HOLD_TIME),
            self._int(m, "keepalive", p, 1, 21845, KEEPALIVE),
            self._int(m, "gracefulRestart", p, 0, 4095, GRACEFUL_RESTART),
            secret, tuple(comms),
            bool(r.get(m, "ipv4OverIpv6", p, r.boolean, default=False)),
            Bfd(bfd is not None,
                self._int(bm, "minRx", f"{p}.bfd", 10, 60000, BFD_MIN_RX_MS),
                self._int(bm, "minTx", f"{p}.bfd", 10, 60000, BFD_MIN_TX_MS),
                self._int(bm, "multiplier", f"{p}.bfd", 2, 255, BFD_MULTIPLIER)),
            self._int(m, "maxPrefixes", p, 1, 1000000, MAX_PREFIXES),
        )

    def _uplink(self, raw: Any, p: str) -> UplinkSpec | None:
        r = self.r
        m = r.mapping(raw, p, None)
        tor = r.get(m, "tor", p, r.string, required=True)
        v4 = r.get(m, "ipv4", p, r.iface4)
        v6 = r.get(m, "ipv6", p, r.iface6)
        unnumbered = r.get(m, "unnumbered", p, r.boolean, default=False)
        if tor is None:
            return None
        return UplinkSpec(tor, v4, v6, bool(unnumbered))

    def _peer(self, raw: Any, p: str, bfd_default: bool) -> PeerSpec | None:
        r = self.r
        m = r.mapping(raw, p, None)
        name = r.get(m, "name", p, r.string, required=True)
        asn = r.get(m, "asn", p, r.asn, required=True)
        address = cast("Address | None", r.get(m, "address", p, self._ip))
        local = cast("Address | None", r.get(m, "localAddress", p, self._ip))
        families = r.get(m, "families", p, r.net_list(r.choice([f.value for f in Family])))
        next_hop = r.get(m, "ipv6NextHop", p, r.ipv6)
        interface = r.get(m, "interface", p, r.string)
        bfd = r.get(m, "bfd", p, r.boolean, default=bfd_default)
        if name is None or asn is None:
            return None
        return PeerSpec(name, asn, address, local, tuple(Family(f) for f in families or ()),
                        next_hop, interface, bool(bfd))

    def _ip(self, value: Any, path: str) -> Address | None:
        if not isinstance(value, str):
            self.r.error(path, "must be an IP address as a string", value)
            return None
        return self.r.ipv6(value, path) if ":" in value else self.r.ipv4(value, path)

    def _net(self, value: Any, path: str) -> Prefix | None:
        if not isinstance(value, str):
            self.r.error(path, "must be an IP network as a string", value)
            return None
        return self.r.net6(value, path) if ":" in value else self.r.net4(value, path)

    def _srv6(self, raw: Any) -> tuple[bool, str, str, Prefix | None, tuple[LocalSid, ...],
                                       tuple[EncapRoute, ...]] | None:
        r, p = self.r, f"{_SPEC}.srv6"
        m = r.mapping(raw or {}, p, None)
        if m is None:
            return None
        sids = tuple(s for sp, item in r.items(m.get("localSids"), f"{p}.localSids")
                     if (s := self._sid(item, sp)) is not None)
        routes = tuple(x for rp, item in r.items(m.get("routes"), f"{p}.routes")
                       if (x := self._route(item, rp)) is not None)
        mode = r.get(m, "encapMode", p, _one_of(r, [x.value for x in EncapMode],
                                                  "must be encap or encap.red"))
        datapath = r.get(m, "datapath", p, _one_of(r, list(SRV6_DATAPATHS),
                                                     "must be auto, kernel or bpf"))
        return (bool(r.get(m, "enabled", p, r.boolean, default=False)),
                mode or ENCAP_MODE.value, datapath or SRV6_DATAPATH,
                r.get(m, "locator", p, r.net6), sids, routes)

    def _service(self, raw: Any, p: str) -> ServiceRoute | None:
        r = self.r
        m = r.mapping(raw, p, None)
        prefix = cast("Prefix | None", r.get(m, "prefix", p, self._net, required=True))
        service = r.get(m, "service", p, r.string, required=True)
        source = r.get(m, "source", p, r.choice([x.value for x in Source]), required=True)
        reason = r.get(m, "reason", p, _text) or ""
        comms = r.get(m, "communities", p, r.net_list(r.string)) or ()
        if prefix is None or service is None or source is None:
            return None
        return ServiceRoute(prefix, service, Source(source), reason, comms)

    def _sid(self, raw: Any, p: str) -> LocalSid | None:
        r = self.r
        m = r.mapping(raw, p, None)
        sid = r.get(m, "sid", p, r.ipv6, required=True)
        behavior = r.get(m, "behavior", p, r.choice([b.value for b in Behavior]),
                         required=True)
        length = r.get(m, "length", p, r.int_in(16, 128), default=128) or 128
        if sid is None or behavior is None:
            return None
        return LocalSid(sid, Behavior(behavior), length)

    def _route(self, raw: Any, p: str) -> EncapRoute | None:
        r = self.r
        m = r.mapping(raw, p, None)
        prefix = cast("Prefix | None", r.get(m, "prefix", p, self._net, required=True))
        segments = r.get(m, "segments", p, r.net_list(r.ipv6), required=True)
        if m is not None and segments == ():
            r.error(p, "needs at least one segment")
        target = r.get(m, "target", p, r.string) or ""
        policy = r.get(m, "policy", p, r.string)
        usids = r.get(m, "usids", p, r.net_list(r.net6)) or ()
        if prefix is None or not segments:
            return None
        return EncapRoute(prefix, segments, target, policy, usids)


def _one_of(r: Reader, options: list[str], message: str) -> Callable[[Any, str], str | None]:
    """Reader.choice with the node state's own message (`must be encap or encap.red`)."""
    def conv(value: Any, path: str) -> str | None:
        if value not in options:
            r.error(path, message, value)
            return None
        return str(value)

    return conv
