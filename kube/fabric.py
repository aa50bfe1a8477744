"""Kubernetes objects -> a validated `Fabric`: FabricConfig + RackPeerings + Nodes.

The objects are assembled into the fabric file's document (flatroute.dev/v1 Fabric) and
validated by the one loader (`parse_fabric`), so Kubernetes mode and static mode accept
exactly the same fabrics. Every error the loader reports with a path in the assembled
document is mapped back to the object and field it came from, e.g.
`RackPeering/r1: spec.tors[1].asn: ...` or
`Node/n4: metadata.labels[topology.kubernetes.io/zone]: ...`.

Per-node problems that only concern one Kubernetes Node (no rack label, a rack no
RackPeering defines, a site label that contradicts the rack's site) leave that node out of
the fabric ("unplaced", reported on the FabricConfig's status) instead of rejecting the
whole input: one mislabelled node among hundreds must not freeze the fabric.

Node fields:
- rack: the label `nodeDiscovery.rackLabel` (default topology.kubernetes.io/zone)
- site: the label `nodeDiscovery.siteLabel` (default topology.kubernetes.io/region); only
  checked against the rack's site (the rack decides)
- role: label, else annotation, `nodeDiscovery.roleLabel` (default flatroute.dev/role)
- uplinks: the Node's `status.addresses` (InternalIP) that lie in a ToR's peering subnet;
  the annotation flatroute.dev/uplinks (JSON, as in the fabric file) overrides them;
  otherwise the controller allocates from the ToR subnet and keeps it in the ledger
- asn / routerId: optional pins, annotations flatroute.dev/asn and flatroute.dev/router-id
- srv6.datapath: the annotation flatroute.dev/srv6-datapath (auto, kernel or bpf) overrides
  the fabric's spec.srv6.datapath for that node
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flatroute.errors import FieldError, InvalidInput
from flatroute.fabric import Fabric, parse_fabric
from flatroute.fabric import model as fm

DEFAULT_RACK_LABEL = "topology.kubernetes.io/zone"
DEFAULT_SITE_LABEL = "topology.kubernetes.io/region"
DEFAULT_ROLE_KEY = "flatroute.dev/role"
ASN_ANNOTATION = "flatroute.dev/asn"
ROUTER_ID_ANNOTATION = "flatroute.dev/router-id"
UPLINKS_ANNOTATION = "flatroute.dev/uplinks"
#: a node's own SRv6 datapath (auto, kernel or bpf), overriding spec.srv6.datapath
DATAPATH_ANNOTATION = "flatroute.dev/srv6-datapath"

Obj = Mapping[str, Any]
_CONFIG_KEYS = ("asn", "bgp", "pods", "srv6", "wan", "sites", "services")


@dataclass(frozen=True, slots=True)
class Discovery:
    """How Nodes become fabric nodes (FabricConfig spec.nodeDiscovery)."""

    rack_label: str = DEFAULT_RACK_LABEL
    site_label: str = DEFAULT_SITE_LABEL
    role_key: str = DEFAULT_ROLE_KEY
    label_selector: str = ""

    @classmethod
    def from_spec(cls, spec: Any) -> Discovery:
        d = spec.get("nodeDiscovery") if isinstance(spec, Mapping) else None
        if not isinstance(d, Mapping):
            return cls()
        return cls(str(d.get("rackLabel") or DEFAULT_RACK_LABEL),
                   str(d.get("siteLabel") or DEFAULT_SITE_LABEL),
                   str(d.get("roleLabel") or DEFAULT_ROLE_KEY),
                   str(d.get("labelSelector") or ""))


@dataclass(frozen=True, slots=True)
class Unplaced:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Origin:
    prefix: str  # path in the assembled document
    source: str  # e.g. "Node/n1"
    base: str  # path in that object the prefix maps to
    renames: tuple[tuple[str, str], ...] = ()  # first key below prefix -> path in the object


@dataclass(frozen=True, slots=True)
class Assembled:
    """The fabric document built from the objects, before validation."""

    doc: dict[str, Any]
    digest: str  # sha256 of the canonical document: equal digests, equal fabric
    unplaced: tuple[Unplaced, ...]
    origins: tuple[_Origin, ...] = field(repr=False)
    errors: tuple[FieldError, ...] = ()  # problems found while assembling

    def parse(self) -> Fabric:
        """Validate with the fabric loader; InvalidInput names the objects and fields."""
        if self.errors:
            raise InvalidInput(list(self.errors))
        text = json.dumps(self.doc, sort_keys=True)  # JSON is YAML: the loader reads it
        try:
            return parse_fabric(text, "kubernetes")
        except InvalidInput as exc:
            raise InvalidInput([map_error(e, self.origins) for e in exc.errors]) from exc


def _meta(obj: Obj) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name") or "")


def _labels(obj: Obj, key: str) -> Mapping[str, Any]:
    m = _meta(obj).get(key)
    return m if isinstance(m, Mapping) else {}


def _subnets(tor: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    peering = tor.get("peering") if isinstance(tor, Mapping) else None
    if not isinstance(peering, Mapping):
        return out
    for fam in ("ipv4", "ipv6"):
        try:
            out.append(ipaddress.ip_interface(str(peering.get(fam))).network)
        except ValueError:
            continue
    return out


def _uplinks_from_addresses(node: Obj, tors: list[Any]) -> dict[str, dict[str, str]]:
    status = node.get("status")
    addrs = status.get("addresses") if isinstance(status, Mapping) else None
    ips = []
    for a in addrs if isinstance(addrs, list) else ():
        if isinstance(a, Mapping) and a.get("type") == "InternalIP":
            try:
                ips.append(ipaddress.ip_address(str(a.get("address"))))
            except ValueError:
                continue
    out: dict[str, dict[str, str]] = {}
    for tor in tors:
        name = str(tor.get("name")) if isinstance(tor, Mapping) else ""
        for net in _subnets(tor):
            for ip in ips:
                if ip.version == net.version and ip in net:
                    out.setdefault(name, {})[f"ipv{ip.version}"] = str(ip)
                    break
    return out


def assemble(config: Obj, racks: Iterable[Obj], nodes: Iterable[Obj]) -> Assembled:
    """Build the fabric document from a FabricConfig, RackPeerings and Nodes."""
    cname = _name(config)
    csrc = f"FabricConfig/{cname}"
    spec_in = config.get("spec")
    spec_in = spec_in if isinstance(spec_in, Mapping) else {}
    origins: list[_Origin] = [_Origin("spec", csrc, "spec"),
                              _Origin("metadata", csrc, "metadata")]
    errors: list[FieldError] = []
    spec, sites = _config_spec(spec_in)
    rack_site, rack_tors = _add_racks(racks, sites, csrc, origins, errors)
    spec["nodes"], unplaced = _add_nodes(nodes, Discovery.from_spec(spec_in), rack_site,
                                         rack_tors, origins, errors)
    doc = {"apiVersion": fm.API_VERSION, "kind": fm.KIND, "metadata": {"name": cname},
           "spec": spec}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return Assembled(doc, digest, tuple(unplaced), tuple(origins), tuple(errors))


def _config_spec(spec_in: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The FabricConfig's part of the document, and its sites with their racks emptied."""
    spec: dict[str, Any] = {k: spec_in[k] for k in _CONFIG_KEYS if k in spec_in}
    sites_in = spec_in.get("sites")
    sites: list[Any] = [dict(s) if isinstance(s, Mapping) else s
                        for s in (sites_in if isinstance(sites_in, list) else [])]
    if isinstance(sites_in, list):
        spec["sites"] = sites
    for s in sites:
        if isinstance(s, dict):
            s.pop("racks", None)
            s["racks"] = []  # filled from RackPeerings; an empty site is not an error here
    return spec, sites


def _add_racks(racks: Iterable[Obj], sites: list[Any], csrc: str, origins: list[_Origin],
               errors: list[FieldError]) -> tuple[dict[str, str], dict[str, list[Any]]]:
    """Puts each RackPeering into its site; returns each placed rack's site and ToRs."""
    site_index = {str(s.get("name")): i for i, s in enumerate(sites) if isinstance(s, Mapping)}
    rack_site: dict[str, str] = {}
    rack_tors: dict[str, list[Any]] = {}
    for rp in sorted(racks, key=_name):
        rname, rsrc = _name(rp), f"RackPeering/{_name(rp)}"
        raw_spec = rp.get("spec")
        rspec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
        site = str(rspec.get("site") or "")
        if site not in site_index:
            errors.append(FieldError(rsrc, "spec.site", f"no site {site!r} in {csrc}",
                                     site, True))
            continue
        i = site_index[site]
        j = len(sites[i]["racks"])
        tors = rspec.get("tors")
        rack: dict[str, Any] = {"name": rname, "tors": tors}
        if "bfd" in rspec:
            rack["bfd"] = rspec["bfd"]
        sites[i]["racks"].append(rack)
        rack_site[rname] = site
        rack_tors[rname] = tors if isinstance(tors, list) else []
        origins.append(_Origin(f"spec.sites[{i}].racks[{j}]", rsrc, "spec",
                               (("name", "metadata.name"),)))
    return rack_site, rack_tors


def _add_nodes(nodes: Iterable[Obj], disc: Discovery, rack_site: Mapping[str, str],
               rack_tors: dict[str, list[Any]], origins: list[_Origin],
               errors: list[FieldError]) -> tuple[list[dict[str, Any]], list[Unplaced]]:
    """The fabric's nodes from the Nodes that name a placed rack, and those left unplaced."""
    out_nodes: list[dict[str, Any]] = []
    unplaced: list[Unplaced] = []
    for node in sorted(nodes, key=_name):
        name = _name(node)
        labels = _labels(node, "labels")
        problem = _placement_problem(labels, disc, rack_site)
        if problem is not None:
            unplaced.append(Unplaced(name, problem))
            continue
        rack = str(labels.get(disc.rack_label))
        entry, renames = _node_entry(node, name, rack, disc, rack_tors[rack], errors)
        origins.append(_Origin(f"spec.nodes[{len(out_nodes)}]", f"Node/{name}", "",
                               tuple(renames)))
        out_nodes.append(entry)
    return out_nodes, unplaced


def _placement_problem(labels: Mapping[str, Any], disc: Discovery,
                       rack_site: Mapping[str, str]) -> str | None:
    """Why a Node's labels place it in no rack, or None when they do."""
    rack_value = labels.get(disc.rack_label)
    if not rack_value:
        return f"no label {disc.rack_label}"
    rack = str(rack_value)
    if rack not in rack_site:
        return f"label {disc.rack_label}={rack}: no RackPeering {rack!r}"
    site_value = labels.get(disc.site_label)
    if site_value and str(site_value) != rack_site[rack]:
        return (f"label {disc.site_label}={site_value} but rack {rack} "
                f"is in site {rack_site[rack]}")
    return None


def _node_entry(node: Obj, name: str, rack: str, disc: Discovery, tors: list[Any],
                errors: list[FieldError]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A placed Node as a fabric node, and where each of its fields came from."""
    labels, notes = _labels(node, "labels"), _labels(node, "annotations")
    entry: dict[str, Any] = {"name": name, "rack": rack}
    renames = [("name", "metadata.name"), ("rack", f"metadata.labels[{disc.rack_label}]")]
    if disc.role_key in labels:
        entry["role"] = labels[disc.role_key]
        renames.append(("role", f"metadata.labels[{disc.role_key}]"))
    elif disc.role_key in notes:
        entry["role"] = notes[disc.role_key]
        renames.append(("role", f"metadata.annotations[{disc.role_key}]"))
    if ASN_ANNOTATION in notes:
        raw = str(notes[ASN_ANNOTATION])
        entry["asn"] = int(raw) if raw.isdigit() else raw
        renames.append(("asn", f"metadata.annotations[{ASN_ANNOTATION}]"))
    if ROUTER_ID_ANNOTATION in notes:
        entry["routerId"] = notes[ROUTER_ID_ANNOTATION]
        renames.append(("routerId", f"metadata.annotations[{ROUTER_ID_ANNOTATION}]"))
    if DATAPATH_ANNOTATION in notes:
        entry["srv6"] = {"datapath": str(notes[DATAPATH_ANNOTATION])}
        renames.append(("srv6.datapath", f"metadata.annotations[{DATAPATH_ANNOTATION}]"))
    _add_uplinks(entry, renames, node, name, notes, tors, errors)
    return entry, renames


def _add_uplinks(entry: dict[str, Any], renames: list[tuple[str, str]], node: Obj, name: str,
                 notes: Mapping[str, Any], tors: list[Any], errors: list[FieldError]) -> None:
    """Uplinks from the annotation when there is one, else from the Node's addresses."""
    if UPLINKS_ANNOTATION in notes:
        try:
            entry["uplinks"] = json.loads(str(notes[UPLINKS_ANNOTATION]))
        except ValueError as exc:
            errors.append(FieldError(f"Node/{name}",
                                     f"metadata.annotations[{UPLINKS_ANNOTATION}]",
                                     f"not valid JSON: {exc}"))
        renames.append(("uplinks", f"metadata.annotations[{UPLINKS_ANNOTATION}]"))
        return
    found = _uplinks_from_addresses(node, tors)
    if found:
        entry["uplinks"] = found
        renames.append(("uplinks", "status.addresses"))


def _below(path: str, prefix: str) -> str | None:
    """The rest of `path` below `prefix` ('' if equal), or None when not below it."""
    if path == prefix:
        return ""
    if path.startswith(prefix) and path[len(prefix)] in ".[":
        return path[len(prefix):].lstrip(".")
    return None


def map_error(err: FieldError, origins: Iterable[_Origin]) -> FieldError:
    """An error on the assembled document, re-addressed to the object it came from."""
    best: tuple[_Origin, str] | None = None
    for o in origins:
        rest = _below(err.path, o.prefix)
        if rest is not None and (best is None or len(o.prefix) > len(best[0].prefix)):
            best = (o, rest)
    if best is None:
        return err
    o, rest = best
    head, sep, tail = rest.partition(".")
    bracket = head.find("[")
    key = head if bracket < 0 else head[:bracket]
    for old, new in o.renames:
        if key == old:
            mapped = new + head[len(key):] + (sep + tail if sep else "")
            return FieldError(o.source, mapped, err.message, err.value, err.has_value)
    path = ".".join(p for p in (o.base, rest) if p)
    return FieldError(o.source, path, err.message, err.value, err.has_value)
