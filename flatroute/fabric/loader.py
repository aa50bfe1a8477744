"""Parse and validate a fabric description at the boundary, reporting every error at once.

`parse_fabric` is pure (document in, Fabric or InvalidInput out); `load_fabric` adds the file.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import yaml

from flatroute.errors import InvalidInput, field_error
from flatroute.fabric.model import (
    API_VERSION,
    KIND,
    SRV6_DATAPATHS,
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
    Site,
    Srv6Options,
    Srv6Policy,
    Underlay,
    Uplink,
)
from flatroute.fabric.reader import Reader

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_NO_ID = ipaddress.IPv4Address(0)
# libyaml's safe loader when present: 10x faster on large fabrics, same result.
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_fabric(path: str | Path) -> Fabric:
    """Read and validate a fabric file. Raises InvalidInput (never a traceback-worthy error)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput([field_error(source, "", f"cannot read file: {exc.strerror}")]) from exc
    return parse_fabric(text, source)


def parse_fabric(text: str, source: str = "<fabric>") -> Fabric:
    try:
        doc = yaml.load(text, Loader=_YamlLoader)  # CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput([field_error(source, where, f"not valid YAML: {problem}")]) from exc
    return _FabricParser(Reader(source)).parse(doc)


class _FabricParser:
    def __init__(self, r: Reader) -> None:
        self.r = r

    def parse(self, doc: Any) -> Fabric:
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
        fabric = self._spec(spec, name)
        if fabric is None:
            raise InvalidInput(r.errors)
        # Cross-checks run even after field errors, so one run reports everything; an entity
        # with a bad field is kept with a neutral value (ASN 0, router-id 0.0.0.0) that the
        # cross-checks skip, so one mistake does not cascade into others.
        self._cross_check(fabric)
        if r.errors:
            raise InvalidInput(r.errors)
        return fabric

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
        return Fabric(name, asn, bgp, pods, srv6, wan, sites, nodes, self.r.source)

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
        hold = r.get(m, "holdTime", p, r.int_in(3, 65535), default=9) or 9
        keep = r.get(m, "keepalive", p, r.int_in(1, 21845), default=3) or 3
        if keep * 3 > hold:
            r.error(f"{p}.keepalive", f"must be at most a third of holdTime ({hold})", keep)
        gr = r.get(m, "gracefulRestart", p, r.int_in(0, 4095), default=120)
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
        maxp = r.get(m, "maxPrefixes", p, r.int_in(1, 1000000), default=100) or 100
        return BgpOptions(hold, keep, gr if gr is not None else 120, md5, tuple(comms),
                          bool(v4v6), bfd, maxp)

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
        return SecretRef(file=f, kubernetes_name=kname, kubernetes_key=kkey or "password")

    def _bfd(self, raw: Any) -> Bfd:
        r, p = self.r, "spec.bgp.bfd"
        if raw is None:
            return Bfd()
        m = r.mapping(raw, p, {"enabled", "minRx", "minTx", "multiplier"})
        return Bfd(
            bool(r.get(m, "enabled", p, r.boolean, default=True)),
            r.get(m, "minRx", p, r.int_in(10, 60000), default=300) or 300,
            r.get(m, "minTx", p, r.int_in(10, 60000), default=300) or 300,
            r.get(m, "multiplier", p, r.int_in(2, 255), default=3) or 3,
        )

    def _pods(self, raw: Any) -> PodOptions:
        r, p = self.r, "spec.pods"
        if raw is None:
            return PodOptions()
        m = r.mapping(raw, p, {"ipv4BlockSize", "ipv6BlockSize", "mtu"})
        return PodOptions(
            r.get(m, "ipv4BlockSize", p, r.int_in(8, 32), default=26) or 26,
            r.get(m, "ipv6BlockSize", p, r.int_in(48, 128), default=122) or 122,
            r.get(m, "mtu", p, r.int_in(1280, 9216), default=1500) or 1500,
        )

    def _srv6(self, raw: Any) -> Srv6Options:
        r, p = self.r, "spec.srv6"
        if raw is None:
            return Srv6Options()
        m = r.mapping(
            raw, p,
            {"enabled", "encapMode", "decapIpv4", "decapIpv6", "scope", "locatorLength",
             "policies", "underlayMtu", "datapath"},
        )
        enc = r.get(m, "encapMode", p, r.choice([x.value for x in EncapMode]), default="encap")
        d4 = r.get(m, "decapIpv4", p, r.choice([x.value for x in Decap4]), default="End.DX4")
        d6 = r.get(m, "decapIpv6", p, r.choice([x.value for x in Decap6]), default="End.DT6")
        scope = r.get(m, "scope", p, r.choice([x.value for x in SegmentScope]), default="node")
        policies = tuple(
            pol for pp, item in r.items(m.get("policies") if m else None, f"{p}.policies")
            if (pol := self._policy(item, pp)) is not None
        )
        return Srv6Options(
            bool(r.get(m, "enabled", p, r.boolean, default=True)),
            EncapMode(enc or "encap"),
            Decap4(d4 or "End.DX4"),
            Decap6(d6 or "End.DT6"),
            SegmentScope(scope or "node"),
            r.get(m, "locatorLength", p, r.int_in(16, 112), default=64) or 64,
            policies,
            r.get(m, "underlayMtu", p, r.int_in(1280, 9216), default=1500) or 1500,
            r.get(m, "datapath", p, r.choice(list(SRV6_DATAPATHS)), default="auto") or "auto",
        )

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
        keys = {"name", "asn", "routerId", "platform", "locator", "ports"}
        if peering:
            keys.add("peering")
        m = r.mapping(raw, p, keys)
        name = r.get(m, "name", p, r.name, required=True)
        asn = r.get(m, "asn", p, r.asn, required=True)
        rid = r.get(m, "routerId", p, r.ipv4, required=True)
        plat = r.get(m, "platform", p, r.choice(["frr", "sonic", "eos", "nxos", "junos"]),
                     default="frr")
        loc = r.get(m, "locator", p, r.net6)
        ports = r.mapping(m.get("ports", {}) if m else None, f"{p}.ports", None)
        peer = Peering()
        if peering:
            peer = self._peering(m.get("peering") if m else None, f"{p}.peering")
        if name is None:
            return None
        return Router(name, asn or 0, rid or _NO_ID, Platform(plat or "frr"), peer, loc,
                      tuple(sorted((str(k), str(v)) for k, v in (ports or {}).items())))

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
        m = r.mapping(raw, p, {"name", "tors"})
        name = r.get(m, "name", p, r.name, required=True)
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
        return Rack(name, site, tors)

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
            uplinks.append(Uplink(str(tor), r.get(am, "ipv4", up, r.ipv4),
                                  r.get(am, "ipv6", up, r.ipv6)))
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

    # -- whole-document checks ---------------------------------------------------------------
    def _cross_check(self, f: Fabric) -> None:
        r = self.r
        # Unique names across every entity: they are keys for ports, waypoints and the lab.
        seen: dict[str, str] = {}
        for path, name in _named_things(f):
            if name in seen:
                r.error(f"{path}.name", f"duplicate name, already used at {seen[name]}", name)
            else:
                seen[name] = path
        routers = _router_paths(f)
        self._check_router_asns(f, routers)
        self._check_unique_values(f, routers)
        self._check_overlaps(f)
        self._check_sizes(f)
        self._check_nodes(f, routers)
        self._check_srv6(f)

    def _check_router_asns(self, f: Fabric, routers: list[tuple[str, Router, str]]) -> None:
        by_asn: dict[int, tuple[str, Router, str]] = {}
        for path, router, role in routers:
            if router.asn == 0:
                continue
            prev = by_asn.get(router.asn)
            if prev is None:
                by_asn[router.asn] = (path, router, role)
                continue
            same_spine_tier = role == prev[2] == "spine" and path.split(".spines")[0] == prev[
                0].split(".spines")[0]
            if not same_spine_tier:
                self.r.error(f"{path}.asn", f"duplicate ASN, already used by {prev[1].name}",
                             router.asn)
        scheme = f.asn
        if scheme.mode is AsnMode.CLUSTER and scheme.cluster_asn in by_asn:
            self.r.error("spec.asn.cluster", "collides with a router's ASN", scheme.cluster_asn)
        if scheme.mode is not AsnMode.CLUSTER:
            for asn, (path, router, _) in by_asn.items():
                if scheme.range_start <= asn <= scheme.range_end:
                    self.r.error(f"{path}.asn", "lies inside the node/rack ASN range "
                                 "spec.asn.range", asn)
                    _ = router
        for i, node in enumerate(f.nodes):
            if node.asn is not None and node.asn in by_asn:
                self.r.error(f"spec.nodes[{i}].asn", "collides with a router's ASN", node.asn)
        pinned: dict[int, int] = {}
        if scheme.mode is AsnMode.PER_NODE:
            for i, node in enumerate(f.nodes):
                if node.asn is None:
                    continue
                if node.asn in pinned:
                    self.r.error(f"spec.nodes[{i}].asn", "duplicate ASN, already pinned by "
                                 f"{f.nodes[pinned[node.asn]].name}", node.asn)
                pinned[node.asn] = i

    def _check_unique_values(self, f: Fabric, routers: list[tuple[str, Router, str]]) -> None:
        seen: dict[str, str] = {}

        def claim(path: str, value: object) -> None:
            key = str(value)
            if key in seen:
                self.r.error(path, f"duplicate address, already used at {seen[key]}", key)
            else:
                seen[key] = path

        for path, router, _ in routers:
            if router.router_id != _NO_ID:
                claim(f"{path}.routerId", router.router_id)
        for i, node in enumerate(f.nodes):
            if node.router_id is not None:
                claim(f"spec.nodes[{i}].routerId", node.router_id)
        for path, router, _ in routers:
            if router.peering.ipv4:
                claim(f"{path}.peering.ipv4", router.peering.ipv4.ip)
            if router.peering.ipv6:
                claim(f"{path}.peering.ipv6", router.peering.ipv6.ip)
        for i, node in enumerate(f.nodes):
            for up in node.uplinks:
                if up.ipv4:
                    claim(f"spec.nodes[{i}].uplinks.{up.tor}.ipv4", up.ipv4)
                if up.ipv6:
                    claim(f"spec.nodes[{i}].uplinks.{up.tor}.ipv6", up.ipv6)

    def _check_overlaps(self, f: Fabric) -> None:
        nets: list[tuple[str, Net]] = []
        for si, s in enumerate(f.sites):
            base = f"spec.sites[{si}]"
            nets += [(f"{base}.pools.ipv4[{i}]", n) for i, n in enumerate(s.ipv4_pools)]
            nets += [(f"{base}.pools.ipv6[{i}]", n) for i, n in enumerate(s.ipv6_pools)]
            if s.locator_block:
                nets.append((f"{base}.locatorBlock", s.locator_block))
            if s.underlay.ipv4:
                nets.append((f"{base}.underlay.ipv4", s.underlay.ipv4))
            if s.underlay.ipv6:
                nets.append((f"{base}.underlay.ipv6", s.underlay.ipv6))
        for path, router, _ in _router_paths(f):
            if router.locator:
                nets.append((f"{path}.locator", router.locator))
        by_family: dict[int, list[tuple[str, Net]]] = defaultdict(list)
        for path, net in nets:
            by_family[net.version].append((path, net))
        for family in by_family.values():
            # Prefixes either nest or are disjoint: sweep in address order, keeping the chain
            # of prefixes that contain the current address, so every overlapping pair is
            # reported (not only neighbours in the sort order).
            family.sort(key=lambda x: (int(x[1].network_address), x[1].prefixlen))
            open_: list[tuple[str, Net]] = []
            for pb, nb in family:
                start = int(nb.network_address)
                while open_ and int(open_[-1][1].broadcast_address) < start:
                    open_.pop()
                for pa, na in open_:
                    self.r.error(pb, f"overlaps {na} at {pa}", str(nb))
                open_.append((pb, nb))

    def _check_sizes(self, f: Fabric) -> None:
        pods = f.pods
        for si, site in enumerate(f.sites):
            if len(site.racks) > 1 and not site.spines:
                # ToRs never peer with each other, and the WAN carries no pod routes.
                self.r.error(f"spec.sites[{si}].spines", "a site with more than one rack "
                             "needs spines: nothing else joins its racks", site.name)
        for si, s in enumerate(f.sites):
            for i, n4 in enumerate(s.ipv4_pools):
                if pods.ipv4_block_size < n4.prefixlen:
                    self.r.error(f"spec.sites[{si}].pools.ipv4[{i}]", "is smaller than one pod "
                                 f"block (spec.pods.ipv4BlockSize /{pods.ipv4_block_size})",
                                 str(n4))
            for i, n6 in enumerate(s.ipv6_pools):
                if pods.ipv6_block_size < n6.prefixlen:
                    self.r.error(f"spec.sites[{si}].pools.ipv6[{i}]", "is smaller than one pod "
                                 f"block (spec.pods.ipv6BlockSize /{pods.ipv6_block_size})",
                                 str(n6))
            if s.locator_block and f.srv6.locator_length <= s.locator_block.prefixlen:
                self.r.error(f"spec.sites[{si}].locatorBlock", "must be shorter than "
                             f"spec.srv6.locatorLength (/{f.srv6.locator_length})",
                             str(s.locator_block))

    def _check_nodes(self, f: Fabric, routers: list[tuple[str, Router, str]]) -> None:
        racks = f.racks()
        site_of = {r.name: r.site for r in racks.values()}
        for i, node in enumerate(f.nodes):
            p = f"spec.nodes[{i}]"
            rack = racks.get(node.rack)
            if rack is None:
                self.r.error(f"{p}.rack", "names no rack of any site", node.rack)
                continue
            site = f.site(site_of[node.rack])
            tors = {t.name: t for t in rack.tors}
            for up in node.uplinks:
                tor = tors.get(up.tor)
                if tor is None:
                    self.r.error(f"{p}.uplinks.{up.tor}", f"is not a ToR of rack {rack.name} "
                                 f"(ToRs: {', '.join(tors)})", up.tor)
                    continue
                for fam, addr, net in (("ipv4", up.ipv4, tor.peering.ipv4),
                                       ("ipv6", up.ipv6, tor.peering.ipv6)):
                    if addr is None:
                        continue
                    if tor.peering.unnumbered:
                        self.r.error(f"{p}.uplinks.{up.tor}.{fam}",
                                     f"{tor.name} peers unnumbered: no uplink address", str(addr))
                    elif net is None or addr not in net.network:
                        self.r.error(f"{p}.uplinks.{up.tor}.{fam}", "is not inside the ToR's "
                                     f"peering subnet {net.network if net else '(none)'}",
                                     str(addr))
                    elif addr in (net.ip, net.network.network_address):
                        self.r.error(f"{p}.uplinks.{up.tor}.{fam}", "is the ToR's own or the "
                                     "subnet's network address", str(addr))
            checks: tuple[tuple[str, tuple[Net, ...], tuple[Net, ...], int], ...] = (
                ("ipv4", node.ipv4_blocks, site.ipv4_pools, f.pods.ipv4_block_size),
                ("ipv6", node.ipv6_blocks, site.ipv6_pools, f.pods.ipv6_block_size),
            )
            for fam, blocks, pools, size in checks:
                for bi, b in enumerate(blocks):
                    bp = f"{p}.podBlocks.{fam}[{bi}]"
                    if b.prefixlen != size:
                        self.r.error(bp, f"must be a /{size} (spec.pods.{fam}BlockSize)", str(b))
                    elif not any(_within(b, pool) for pool in pools):
                        self.r.error(bp, f"is not inside a {fam} pool of site {site.name}",
                                     str(b))
            if f.asn.mode is not AsnMode.PER_NODE and node.asn is not None:
                self.r.error(f"{p}.asn", f"can only be pinned with spec.asn.scheme per-node "
                             f"(scheme is {f.asn.mode.value})", node.asn)
            elif node.asn is not None and not (f.asn.range_start <= node.asn <= f.asn.range_end):
                self.r.error(f"{p}.asn", "lies outside spec.asn.range", node.asn)
        # Pinned blocks must not be pinned twice.
        owner: dict[str, str] = {}
        for i, node in enumerate(f.nodes):
            pins: tuple[tuple[str, tuple[Net, ...]], ...] = (
                ("ipv4", node.ipv4_blocks), ("ipv6", node.ipv6_blocks))
            for fam, blocks in pins:
                for bi, b in enumerate(blocks):
                    if str(b) in owner:
                        self.r.error(f"spec.nodes[{i}].podBlocks.{fam}[{bi}]",
                                     f"is already pinned by {owner[str(b)]}", str(b))
                    owner[str(b)] = node.name
        _ = routers
        if f.bgp.ipv4_over_ipv6:
            for path, router, role in routers:
                if role == "tor" and router.peering.ipv6 is None and not router.peering.unnumbered:
                    self.r.error(f"{path}.peering.ipv6", "spec.bgp.ipv4OverIpv6 needs an IPv6 "
                                 "peering subnet on every ToR")

    def _check_srv6(self, f: Fabric) -> None:
        if not f.srv6.enabled:
            if f.srv6.policies:
                self.r.error("spec.srv6.policies", "policies need spec.srv6.enabled: true")
            return
        for si, s in enumerate(f.sites):
            if s.locator_block is None:
                self.r.error(f"spec.sites[{si}].locatorBlock", "is required when SRv6 is enabled")
        if f.srv6.scope is SegmentScope.SITE and len(f.sites) > 1:
            for si, s in enumerate(f.sites):
                racks = {r.name for r in s.racks}
                if not any(n.role is NodeRole.GATEWAY and n.rack in racks for n in f.nodes):
                    self.r.error(f"spec.sites[{si}]", "SRv6 scope 'site' needs at least one "
                                 "node with role: gateway in every site", s.name)
        self._check_mtu(f)
        names = {n.name for n in f.nodes} | set(f.routers())
        sites = {s.name for s in f.sites}
        for pi, pol in enumerate(f.srv6.policies):
            p = f"spec.srv6.policies[{pi}]"
            if pol.to.site is not None and pol.to.site not in sites:
                self.r.error(f"{p}.to.site", "names no site", pol.to.site)
            if pol.from_site is not None and pol.from_site not in sites:
                self.r.error(f"{p}.from.site", "names no site", pol.from_site)
            for wi, wp in enumerate(pol.waypoints):
                if wp not in names:
                    self.r.error(f"{p}.waypoints[{wi}]", "names no router or node", wp)


    def _check_mtu(self, f: Fabric) -> None:
        """A pod packet must still fit the underlay once encapsulated: one that does not is
        dropped without an ICMP error (measured in the lab), a silent black hole for every
        full-size packet between sites."""
        if len(f.sites) < 2 and not f.srv6.policies:
            return  # nothing is encapsulated
        segments = 1 + max((sum(len(pol.waypoints) for pol in f.srv6.policies
                                if pol.from_site in (None, s.name)) for s in f.sites), default=0)
        overhead = encap_overhead(f.srv6.encap_mode, segments)
        if f.pods.mtu + overhead > f.srv6.underlay_mtu:
            self.r.error("spec.pods.mtu", f"{f.pods.mtu} + {overhead} bytes of SRv6 "
                         f"encapsulation ({f.srv6.encap_mode.value}, up to {segments} "
                         f"segment{'s' if segments > 1 else ''}) exceeds spec.srv6.underlayMtu "
                         f"{f.srv6.underlay_mtu}: cross-site packets that size would be dropped "
                         f"silently; use at most {f.srv6.underlay_mtu - overhead} or raise "
                         "underlayMtu", str(f.pods.mtu))


def encap_overhead(mode: EncapMode, segments: int) -> int:
    """Bytes SRv6 adds to a packet: the outer IPv6 header, and an SRH (8 bytes + 16 per
    segment it lists) unless H.Encaps.Red carries a single segment in the outer header."""
    listed = segments - 1 if mode is EncapMode.ENCAP_RED else segments
    return 40 + (8 + 16 * listed if listed > 0 else 0)


def _within(a: Net, b: Net) -> bool:
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


_SPEC_KEYS = {"asn", "bgp", "pods", "srv6", "wan", "sites", "nodes"}


def _named_things(f: Fabric) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for si, s in enumerate(f.sites):
        out.append((f"spec.sites[{si}]", s.name))
    for path, router, _ in _router_paths(f):
        out.append((path, router.name))
    for si, s in enumerate(f.sites):
        for ri, rack in enumerate(s.racks):
            out.append((f"spec.sites[{si}].racks[{ri}]", rack.name))
    for i, n in enumerate(f.nodes):
        out.append((f"spec.nodes[{i}]", n.name))
    return out


def _router_paths(f: Fabric) -> list[tuple[str, Router, str]]:
    out = [(f"spec.wan.routers[{i}]", w, "wan") for i, w in enumerate(f.wan_routers)]
    for si, s in enumerate(f.sites):
        out += [(f"spec.sites[{si}].spines[{i}]", sp, "spine") for i, sp in enumerate(s.spines)]
        for ri, rack in enumerate(s.racks):
            out += [(f"spec.sites[{si}].racks[{ri}].tors[{ti}]", t, "tor")
                    for ti, t in enumerate(rack.tors)]
    return out
