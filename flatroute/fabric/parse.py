"""The fabric document (parsed YAML) -> the typed model, recording every field error.

One pass, top to bottom: each section reader returns its model value (a neutral one where a
field is bad) and records what is wrong in the Reader, with the field path. The whole-document
rules (unique names and addresses, overlaps, references) are `flatroute.fabric.checks`.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Any, cast

from flatroute.fabric.model import (
    API_VERSION,
    BFD_MIN_RX_MS,
    BFD_MIN_TX_MS,
    BFD_MULTIPLIER,
    DECAP_IPV4,
    DECAP_IPV6,
    ENCAP_MODE,
    GRACEFUL_RESTART,
    HOLD_TIME,
    IPV4_BLOCK_SIZE,
    IPV6_BLOCK_SIZE,
    KEEPALIVE,
    KIND,
    LOCATOR_LENGTH,
    MAX_PREFIXES,
    MD5_SECRET_KEY,
    NODE_ID_FIRST,
    NODE_ID_LAST,
    POD_MTU,
    SEGMENT_SCOPE,
    SRV6_DATAPATH,
    SRV6_DATAPATHS,
    UNDERLAY_MTU,
    AsnMode,
    AsnScheme,
    Bfd,
    BgpOptions,
    Decap4,
    Decap6,
    EncapMode,
    Fabric,
    Node,
    NodeRole,
    Peering,
    Platform,
    PodOptions,
    PolicyMatch,
    Rack,
    Router,
    SecretRef,
    SegmentScope,
    SidFormat,
    Site,
    Srv6Options,
    Srv6Policy,
    Underlay,
    Uplink,
)
from flatroute.fabric.reader import Reader
from flatroute.fabric.services import read_services

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
#: the router-id of a router whose routerId is bad: the cross-checks skip it
NO_ID = ipaddress.IPv4Address(0)
_SPEC_KEYS = {"asn", "bgp", "pods", "srv6", "wan", "sites", "nodes", "services"}


class FabricParser:
    """One pass over a document; every problem goes to the Reader with its field path."""

    def __init__(self, r: Reader) -> None:
        self.r = r

    def document(self, doc: Any) -> Fabric | None:
        """The fabric, or None when the document has no usable spec at all.

        An entity with a bad field is kept with a neutral value (ASN 0, router-id 0.0.0.0)
        that the cross-checks skip, so one mistake does not cascade into others."""
        r = self.r
        top = r.mapping(doc, "", {"apiVersion", "kind", "metadata", "spec"})
        api = r.get(top, "apiVersion", "", r.string, required=True)
        if api is not None and api != API_VERSION:
            r.error("apiVersion", f"must be {API_VERSION}", api)
        kind = r.get(top, "kind", "", r.string, required=True)
        if kind is not None and kind != KIND:
            r.error("kind", f"must be {KIND}", kind)
        raw_meta = top.get("metadata", {}) if top else None
        meta = r.mapping(raw_meta, "metadata", {"name", "description"}) if top else None
        name = r.get(meta, "name", "metadata", r.name, required=True) or "?"
        spec = r.mapping(top.get("spec") if top else None, "spec", _SPEC_KEYS)
        return self._spec(spec, name)

    # -- sections -----------------------------------------------------------------------------
    def _spec(self, spec: dict[str, Any] | None, name: str) -> Fabric | None:
        if spec is None:
            return None
        asn = self._asn(spec.get("asn"))
        bgp = self._bgp(spec.get("bgp"))
        pods = self._pods(spec.get("pods"))
        srv6 = self._srv6(spec.get("srv6"))
        wan = self._wan(spec.get("wan"))
        sites = tuple(
            s for p, raw in self.r.items(spec.get("sites"), "spec.sites")
            if (s := self._site(raw, p)) is not None
        )
        if "sites" not in spec or not sites:
            self.r.error("spec.sites", "at least one site is required")
        nodes = tuple(
            n for p, raw in self.r.items(spec.get("nodes"), "spec.nodes")
            if (n := self._node(raw, p)) is not None
        )
        if asn is None:
            asn = AsnScheme(AsnMode.CLUSTER, cluster_asn=0)
        services = read_services(self.r, spec.get("services"))
        return Fabric(name, asn, bgp, pods, srv6, wan, sites, nodes, self.r.source, services)

    def _asn(self, raw: Any) -> AsnScheme | None:
        r, p = self.r, "spec.asn"
        m = r.mapping(raw, p, {"scheme", "range", "cluster"})
        if m is None:
            return None
        mode = r.get(m, "scheme", p, r.choice([x.value for x in AsnMode]), required=True)
        if mode is None:
            return None
        if mode == AsnMode.CLUSTER:
            cluster = r.get(m, "cluster", p, r.asn, required=True)
            return AsnScheme(AsnMode.CLUSTER, cluster_asn=cluster or 0)
        rng = r.mapping(m.get("range"), f"{p}.range", {"start", "end"})
        start = r.get(rng, "start", f"{p}.range", r.asn, required=True)
        end = r.get(rng, "end", f"{p}.range", r.asn, required=True)
        if start is not None and end is not None and end < start:
            r.error(f"{p}.range.end", "must not be below range.start", end)
        return AsnScheme(AsnMode(mode), start or 0, end or 0)

    def _bgp(self, raw: Any) -> BgpOptions:
        r, p = self.r, "spec.bgp"
        if raw is None:
            return BgpOptions()
        m = r.mapping(
            raw, p,
            {"holdTime", "keepalive", "gracefulRestart", "md5", "communities", "ipv4OverIpv6",
             "bfd", "maxPrefixes"},
        )
        hold = self._int(m, "holdTime", p, 3, 65535, HOLD_TIME)
        keep = self._int(m, "keepalive", p, 1, 21845, KEEPALIVE)
        if keep * 3 > hold:
            r.error(f"{p}.keepalive", f"must be at most a third of holdTime ({hold})", keep)
        gr = self._int(m, "gracefulRestart", p, 0, 4095, GRACEFUL_RESTART)
        md5 = self._md5(m.get("md5") if m else None)
        comms: list[str] = []
        for cp, c in r.items(m.get("communities") if m else None, f"{p}.communities"):
            s = r.string(c, cp)
            if s is None:
                continue
            parts = s.split(":")
            if len(parts) != 2 or not all(x.isdigit() and int(x) <= 65535 for x in parts):
                r.error(cp, "must be a standard community like 65000:100", s)
            else:
                comms.append(s)
        v4v6 = r.get(m, "ipv4OverIpv6", p, r.boolean, default=False)
        bfd = self._bfd(m.get("bfd") if m else None)
        maxp = self._int(m, "maxPrefixes", p, 1, 1000000, MAX_PREFIXES)
        return BgpOptions(hold, keep, gr, md5, tuple(comms), bool(v4v6), bfd, maxp)

    def _md5(self, raw: Any) -> SecretRef | None:
        r, p = self.r, "spec.bgp.md5"
        if raw is None:
            return None
        if isinstance(raw, dict) and ({"password", "secret", "key"} & set(raw)):
            r.error(p, "the MD5 secret must never be inline: use secretRef.file or "
                       "secretRef.kubernetesSecret")
            return None
        m = r.mapping(raw, p, {"secretRef"})
        ref = r.mapping(m.get("secretRef") if m else None, f"{p}.secretRef",
                        {"file", "kubernetesSecret"})
        if ref is None:
            return None
        f = r.get(ref, "file", f"{p}.secretRef", r.string)
        ks = r.mapping(ref.get("kubernetesSecret", {}), f"{p}.secretRef.kubernetesSecret",
                       {"name", "key"})
        kname = r.get(ks, "name", f"{p}.secretRef.kubernetesSecret", r.name)
        kkey = r.get(ks, "key", f"{p}.secretRef.kubernetesSecret", r.string)
        if bool(f) == bool(kname):
            r.error(f"{p}.secretRef", "give exactly one of file or kubernetesSecret")
            return None
        return SecretRef(file=f, kubernetes_name=kname,
                         kubernetes_key=(kkey or MD5_SECRET_KEY) if kname else None)

    def _bfd(self, raw: Any) -> Bfd:
        r, p = self.r, "spec.bgp.bfd"
        if raw is None:
            return Bfd()
        m = r.mapping(raw, p, {"enabled", "minRx", "minTx", "multiplier"})
        return Bfd(
            bool(r.get(m, "enabled", p, r.boolean, default=True)),  # the section turns it on
            self._int(m, "minRx", p, 10, 60000, BFD_MIN_RX_MS),
            self._int(m, "minTx", p, 10, 60000, BFD_MIN_TX_MS),
            self._int(m, "multiplier", p, 2, 255, BFD_MULTIPLIER),
        )

    def _pods(self, raw: Any) -> PodOptions:
        r, p = self.r, "spec.pods"
        if raw is None:
            return PodOptions()
        m = r.mapping(raw, p, {"ipv4BlockSize", "ipv6BlockSize", "mtu"})
        return PodOptions(
            self._int(m, "ipv4BlockSize", p, 8, 32, IPV4_BLOCK_SIZE),
            self._int(m, "ipv6BlockSize", p, 48, 128, IPV6_BLOCK_SIZE),
            self._int(m, "mtu", p, 1280, 9216, POD_MTU),
        )

    def _srv6(self, raw: Any) -> Srv6Options:
        r, p = self.r, "spec.srv6"
        if raw is None:
            return Srv6Options()
        m = r.mapping(
            raw, p,
            {"enabled", "encapMode", "decapIpv4", "decapIpv6", "scope", "locatorLength",
             "policies", "underlayMtu", "datapath", "format", "locatorBlock", "nodeIds"},
        )
        fmt = SidFormat(self._choice(m, "format", p, SidFormat, SidFormat.FULL))
        # uSID paths put their first container in the destination address: H.Encaps.Red
        enc = self._choice(m, "encapMode", p, EncapMode, EncapMode.ENCAP_RED
                           if fmt is SidFormat.USID_F3216 else ENCAP_MODE)
        d4 = self._choice(m, "decapIpv4", p, Decap4, DECAP_IPV4)
        d6 = self._choice(m, "decapIpv6", p, Decap6, DECAP_IPV6)
        scope = self._choice(m, "scope", p, SegmentScope, SEGMENT_SCOPE)
        policies = tuple(
            pol for pp, item in r.items(m.get("policies") if m else None, f"{p}.policies")
            if (pol := self._policy(item, pp)) is not None
        )
        return Srv6Options(
            bool(r.get(m, "enabled", p, r.boolean, default=True)),  # the section turns it on
            EncapMode(enc),
            Decap4(d4),
            Decap6(d6),
            SegmentScope(scope),
            self._int(m, "locatorLength", p, 16, 112, LOCATOR_LENGTH),
            policies,
            self._int(m, "underlayMtu", p, 1280, 9216, UNDERLAY_MTU),
            r.get(m, "datapath", p, r.choice(list(SRV6_DATAPATHS)),
                  default=SRV6_DATAPATH) or SRV6_DATAPATH,
            fmt, r.get(m, "locatorBlock", p, r.net6), self._node_ids(m, p),
        )

    def _node_ids(self, m: dict[str, Any] | None, p: str) -> tuple[int, int]:
        """spec.srv6.nodeIds {first, last}: the global node IDs (0xe000 and up stay local)."""
        ids = self.r.mapping((m or {}).get("nodeIds") or {}, f"{p}.nodeIds",
                             {"first", "last"})
        first = self._int(ids, "first", f"{p}.nodeIds", 1, NODE_ID_LAST, NODE_ID_FIRST)
        last = self._int(ids, "last", f"{p}.nodeIds", 1, NODE_ID_LAST, NODE_ID_LAST)
        if first > last:
            self.r.error(f"{p}.nodeIds.first", f"must not be above last ({last})", first)
        return first, last

    def _policy(self, raw: Any, p: str) -> Srv6Policy | None:
        r = self.r
        m = r.mapping(raw, p, {"name", "to", "from", "waypoints"})
        name = r.get(m, "name", p, r.name, required=True)
        to = r.mapping(m.get("to") if m else None, f"{p}.to", {"site", "prefix"})
        site = r.get(to, "site", f"{p}.to", r.name)
        prefix = cast("Net | None", r.get(to, "prefix", f"{p}.to", self._any_net))
        if to is not None and (site is None) == (prefix is None):
            r.error(f"{p}.to", "give exactly one of site or prefix")
        frm = r.mapping(m.get("from", {}) if m else None, f"{p}.from", {"site"})
        from_site = r.get(frm, "site", f"{p}.from", r.name)
        wps = r.get(m, "waypoints", p, r.net_list(r.name), required=True) or ()
        if m is not None and "waypoints" in m and not wps:
            r.error(f"{p}.waypoints", "needs at least one waypoint")
        if name is None or to is None:
            return None
        return Srv6Policy(name, PolicyMatch(site, prefix), wps, from_site)

    def _any_net(self, value: Any, path: str) -> Net | None:
        if isinstance(value, str) and ":" in value:
            return self.r.net6(value, path)
        return self.r.net4(value, path)

    def _wan(self, raw: Any) -> tuple[Router, ...]:
        r, p = self.r, "spec.wan"
        if raw is None:
            return ()
        m = r.mapping(raw, p, {"routers"})
        return tuple(
            x for rp, item in r.items(m.get("routers") if m else None, f"{p}.routers")
            if (x := self._router(item, rp, peering=False)) is not None
        )

    def _router(self, raw: Any, p: str, *, peering: bool) -> Router | None:
        r = self.r
        keys = {"name", "asn", "routerId", "platform", "locator", "ports", "usid"}
        if peering:
            keys |= {"peering", "bfd"}
        m = r.mapping(raw, p, keys)
        name = r.get(m, "name", p, r.name, required=True)
        asn = r.get(m, "asn", p, r.asn, required=True)
        rid = r.get(m, "routerId", p, r.ipv4, required=True)
        plat = r.get(m, "platform", p, r.choice(["frr", "sonic", "eos", "nxos", "junos"]),
                     default="frr")
        loc = r.get(m, "locator", p, r.net6)
        usid = bool(r.get(m, "usid", p, r.boolean, default=False))
        ports = r.mapping(m.get("ports", {}) if m else None, f"{p}.ports", None)
        peer = Peering()
        bfd = None
        if peering:
            peer = self._peering(m.get("peering") if m else None, f"{p}.peering")
            bfd = r.get(m, "bfd", p, r.boolean)
        if name is None:
            return None
        return Router(name, asn or 0, rid or NO_ID, Platform(plat or "frr"), peer, loc,
                      tuple(sorted((str(k), str(v)) for k, v in (ports or {}).items())), bfd, usid)

    def _peering(self, raw: Any, p: str) -> Peering:
        r = self.r
        m = r.mapping(raw, p, {"mode", "ipv4", "ipv6"})
        if m is None:
            return Peering()
        mode = r.get(m, "mode", p, r.choice(["subnet", "unnumbered"]), default="subnet")
        v4 = r.get(m, "ipv4", p, r.iface4)
        v6 = r.get(m, "ipv6", p, r.iface6)
        if mode == "unnumbered":
            if v4 or v6:
                r.error(p, "unnumbered peering takes no ipv4/ipv6 subnet")
            return Peering(unnumbered=True)
        if v4 is None and v6 is None and "ipv4" not in m and "ipv6" not in m:
            r.error(p, "subnet peering needs ipv4 and/or ipv6 (address/prefix of the ToR)")
        return Peering(False, v4, v6)

    def _site(self, raw: Any, p: str) -> Site | None:
        r = self.r
        m = r.mapping(raw, p, {"name", "pools", "locatorBlock", "underlay", "spines", "racks"})
        name = r.get(m, "name", p, r.name, required=True)
        pools = r.mapping(m.get("pools") if m else None, f"{p}.pools", {"ipv4", "ipv6"})
        v4 = r.get(pools, "ipv4", f"{p}.pools", r.net_list(r.net4)) or ()
        v6 = r.get(pools, "ipv6", f"{p}.pools", r.net_list(r.net6)) or ()
        if pools is not None and not v4 and not v6:
            r.error(f"{p}.pools", "needs at least one ipv4 or ipv6 pool")
        loc = r.get(m, "locatorBlock", p, r.net6)
        ul = r.mapping(m.get("underlay", {}) if m else None, f"{p}.underlay", {"ipv4", "ipv6"})
        underlay = Underlay(r.get(ul, "ipv4", f"{p}.underlay", r.net4),
                            r.get(ul, "ipv6", f"{p}.underlay", r.net6))
        spines = tuple(
            x for sp, item in r.items(m.get("spines") if m else None, f"{p}.spines")
            if (x := self._router(item, sp, peering=False)) is not None
        )
        racks = tuple(
            rk for rp, item in r.items(m.get("racks") if m else None, f"{p}.racks")
            if (rk := self._rack(item, rp, name or "?")) is not None
        )
        if m is not None and not racks and "racks" not in m:
            r.error(f"{p}.racks", "a site needs at least one rack")
        if name is None:
            return None
        return Site(name, v4, v6, loc, underlay, spines, racks)

    def _rack(self, raw: Any, p: str, site: str) -> Rack | None:
        r = self.r
        m = r.mapping(raw, p, {"name", "tors", "bfd"})
        name = r.get(m, "name", p, r.name, required=True)
        bfd = r.get(m, "bfd", p, r.boolean)
        tors = tuple(
            x for tp, item in r.items(m.get("tors") if m else None, f"{p}.tors")
            if (x := self._router(item, tp, peering=True)) is not None
        )
        if m is not None:
            count = len(m.get("tors") or []) if isinstance(m.get("tors"), list) else 0
            if count == 0:
                r.error(f"{p}.tors", "a rack needs one or two ToRs")
            elif count > 2:
                r.error(f"{p}.tors", "a rack has at most two ToRs", count)
        if name is None:
            return None
        return Rack(name, site, tors, bfd)

    def _node(self, raw: Any, p: str) -> Node | None:
        r = self.r
        m = r.mapping(raw, p, {"name", "rack", "role", "uplinks", "asn", "podBlocks", "routerId",
                               "srv6"})
        name = r.get(m, "name", p, r.name, required=True)
        rack = r.get(m, "rack", p, r.name, required=True)
        role = r.get(m, "role", p, r.choice([x.value for x in NodeRole]), default="worker")
        uplinks: list[Uplink] = []
        ups = r.mapping(m.get("uplinks", {}) if m else None, f"{p}.uplinks", None)
        for tor, addrs in (ups or {}).items():
            up = f"{p}.uplinks.{tor}"
            am = r.mapping(addrs if addrs is not None else {}, up, {"ipv4", "ipv6"})
            v4 = r.get(am, "ipv4", up, r.host4)
            v6 = r.get(am, "ipv6", up, r.host6)
            uplinks.append(Uplink(str(tor), v4[0] if v4 else None, v6[0] if v6 else None,
                                  v4[1] if v4 else None, v6[1] if v6 else None))
        asn = r.get(m, "asn", p, r.asn)
        blocks = r.mapping(m.get("podBlocks", {}) if m else None, f"{p}.podBlocks",
                           {"ipv4", "ipv6"})
        b4 = r.get(blocks, "ipv4", f"{p}.podBlocks", r.net_list(r.net4)) or ()
        b6 = r.get(blocks, "ipv6", f"{p}.podBlocks", r.net_list(r.net6)) or ()
        rid = r.get(m, "routerId", p, r.ipv4)
        srv6 = r.mapping(m.get("srv6", {}) if m else None, f"{p}.srv6", {"datapath"})
        datapath = r.get(srv6, "datapath", f"{p}.srv6", r.choice(list(SRV6_DATAPATHS)))
        if name is None or rack is None:
            return None
        return Node(name, rack, NodeRole(role or "worker"), tuple(uplinks), asn, b4, b6, rid,
                    datapath)

    # -- defaulted fields ---------------------------------------------------------------------
    def _int(self, m: dict[str, Any] | None, key: str, path: str, lo: int, hi: int,
             default: int) -> int:
        """An integer field in [lo, hi]; the default when absent or invalid (recorded)."""
        got = self.r.get(m, key, path, self.r.int_in(lo, hi), default=default)
        return default if got is None else got

    def _choice(self, m: dict[str, Any] | None, key: str, path: str, enum: type[StrEnum],
                default: StrEnum) -> str:
        """One of an enum's values; the default's when absent or invalid (recorded)."""
        got = self.r.get(m, key, path, self.r.choice([x.value for x in enum]),
                         default=default.value)
        return got or default.value
