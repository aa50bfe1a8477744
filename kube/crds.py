"""flatroute's public Kubernetes API: group flatroute.dev, version v1alpha1.

The CustomResourceDefinitions are built here, from shared pieces (one router schema for
spines, WAN routers and ToRs), and written to deploy/crds.yaml by
`python -m kube.crds > deploy/crds.yaml`; a unit test keeps the two identical.

- FabricConfig (cluster): the fabric-wide settings of fabric-configs' `spec` minus racks and
  nodes: ASN scheme, BGP options, pods, SRv6 and its policies, WAN routers, sites with
  pools, locator block, underlay and spines; plus how Nodes are discovered.
- RackPeering (cluster, name = rack name): the rack's site and its one or two ToRs.
- NodeState (cluster, name = node name): spec written by the controller (exactly the
  NodeState contract of flatroute/nodestate.py), status written by that node's speaker.

Why v1alpha1: the shapes follow the v1 fabric file, but the Kubernetes mode has not run on a
real cluster yet (only against a fake API server); we want the freedom to change field names
without a conversion webhook. v1beta1 comes after real-cluster use; the fabric file keeps
flatroute.dev/v1 because it is a different document (kind Fabric, never served).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from flatroute.fabric import model as fm

GROUP = "flatroute.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORIES = ["flatroute"]

S = dict[str, Any]


# -- schema pieces --------------------------------------------------------------------------
def _str(desc: str, **kw: Any) -> S:
    return {"type": "string", "description": desc, **kw}


def _int(desc: str, lo: int | None = None, hi: int | None = None) -> S:
    out: S = {"type": "integer", "description": desc}
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def _bool(desc: str) -> S:
    return {"type": "boolean", "description": desc}


def _obj(desc: str, props: S, required: list[str] | None = None, *,
         rules: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()) -> S:
    out: S = {"type": "object", "description": desc, "properties": props}
    if required:
        out["required"] = required
    if rules:
        out["x-kubernetes-validations"] = [{"rule": r, "message": m} for r, m in rules]
    return out


def _list(desc: str, items: S, max_items: int | None = None, **kw: Any) -> S:
    out: S = {"type": "array", "description": desc, "items": items, **kw}
    if max_items is not None:
        out["maxItems"] = max_items
    return out


NAME = {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
ASN = _int("a 4-byte AS number", 1, 4294967295)
IPV4 = _str("an IPv4 address", format="ipv4", maxLength=15)
IPV6 = _str("an IPv6 address", format="ipv6", maxLength=45)
PREFIX = _str("an IP prefix, e.g. 10.1.0.0/16 or fd00::/48", maxLength=49)
IFACE = _str("an address with its prefix length, e.g. 10.1.1.1/24", maxLength=49)
NETS = _list("prefixes", PREFIX, 256)


def _router(peering: bool) -> S:
    props: S = {
        "name": {**NAME, "description": "router name, unique in the fabric"},
        "asn": ASN,
        "routerId": {**IPV4, "description": "BGP router-id"},
        "platform": _str("config dialect `flatroute render` writes",
                         enum=["frr", "sonic", "eos", "nxos", "junos"]),
        "locator": {**PREFIX, "description": "SRv6 locator: the router gets an End SID"},
        "ports": {"type": "object", "description": "neighbour name -> physical port",
                  "additionalProperties": {"type": "string", "maxLength": 64}},
    }
    if peering:
        props["peering"] = _obj(
            "how the ToR meets its nodes: a server subnet (SVI) per family, or unnumbered",
            {"mode": _str("subnet (default) or unnumbered", enum=["subnet", "unnumbered"]),
             "ipv4": {**IFACE, "description": "ToR address/len of the server subnet"},
             "ipv6": {**IFACE, "description": "ToR address/len of the server subnet"}})
        props["bfd"] = _bool("BFD on this ToR's sessions (default: the rack's, else "
                             "spec.bgp.bfd.enabled)")
    return _obj("a router of the network team", props, ["name", "asn", "routerId"])


CONDITION = _obj("a metav1.Condition", {
    "type": _str("condition type", maxLength=316),
    "status": _str("True, False or Unknown", enum=["True", "False", "Unknown"]),
    "reason": _str("CamelCase reason", maxLength=1024),
    "message": _str("human readable", maxLength=32768),
    "lastTransitionTime": _str("when status last changed", format="date-time"),
    "observedGeneration": _int("metadata.generation the condition was set for", 0),
}, ["type", "status", "lastTransitionTime", "reason", "message"])
CONDITIONS = _list("standard conditions", CONDITION, 16, **{
    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})


def fabric_config_spec() -> S:
    # Longer than our ~60-line rule on purpose: it is one declarative schema, read top to
    # bottom beside the fabric file's documentation; split up it would only be harder to
    # compare with docs/fabric.md.
    bgp = _obj("BGP session options shared by the speakers and the rendered ToR configs", {
        "holdTime": _int(f"hold time, seconds (default {fm.HOLD_TIME})", 3, 65535),
        "keepalive": _int(f"keepalive, seconds (default {fm.KEEPALIVE}); at most holdTime/3",
                          1, 21845),
        "gracefulRestart": _int("restart time advertised (default "
                                f"{fm.GRACEFUL_RESTART}; 0 disables)", 0, 4095),
        "md5": _obj("TCP MD5: a reference, never the secret", {"secretRef": _obj(
            "exactly one of file or kubernetesSecret",
            {"file": _str("path on the node", maxLength=4096),
             "kubernetesSecret": _obj("a Secret in the speakers' namespace",
                                      {"name": NAME,
                                       "key": _str(f"key (default {fm.MD5_SECRET_KEY})",
                                                   maxLength=253)},
                                      ["name"])})}),
        "communities": _list("standard communities attached to announcements",
                             _str("ASN:value", pattern=r"^\d{1,5}:\d{1,5}$"), 32),
        "ipv4OverIpv6": _bool("one IPv6 session per ToR carrying IPv4 too (RFC 8950)"),
        "bfd": _obj("BFD toward the ToRs", {
            "enabled": _bool("default true when the section exists"),
            "minRx": _int("ms", 10, 60000), "minTx": _int("ms", 10, 60000),
            "multiplier": _int("detect multiplier", 2, 255)}),
        "maxPrefixes": _int("maximum-prefix the ToRs apply per node (default "
                            f"{fm.MAX_PREFIXES})", 1, 1000000),
    }, rules=[("!has(self.keepalive) || !has(self.holdTime) || self.keepalive * 3 <= "
               "self.holdTime", "keepalive must be at most a third of holdTime")])
    policy = _obj("steer traffic from a site through waypoints' End SIDs", {
        "name": NAME,
        "from": _obj("source site (default: every site)", {"site": NAME}),
        "to": _obj("exactly one of site or prefix", {"site": NAME, "prefix": PREFIX}),
        "waypoints": _list("router or node names, in order", NAME, 8, minItems=1),
    }, ["name", "to", "waypoints"])
    site = _obj("a site: pod pools, SRv6 locator block, underlay and spines", {
        "name": NAME,
        "pools": _obj("pod blocks come from here", {"ipv4": NETS, "ipv6": NETS}),
        "locatorBlock": {**PREFIX, "description": "node locators are carved from it"},
        "underlay": _obj("router link addressing", {"ipv4": PREFIX, "ipv6": PREFIX}),
        "spines": _list("the site's spines", _router(False), 64),
    }, ["name", "pools"])
    return _obj("fabric-wide settings (the fabric file's spec without racks and nodes)", {
        "asn": _obj("node ASN scheme", {
            "scheme": _str("per-node (RFC 7938), per-rack or cluster",
                           enum=["per-node", "per-rack", "cluster"]),
            "range": _obj("ASNs handed out for per-node and per-rack",
                          {"start": ASN, "end": ASN}, ["start", "end"]),
            "cluster": {**ASN, "description": "the shared ASN of the cluster scheme"},
        }, ["scheme"], rules=[
            ("self.scheme != 'cluster' || has(self.cluster)",
             "the cluster scheme needs asn.cluster"),
            ("self.scheme == 'cluster' || has(self.range)",
             "per-node and per-rack schemes need asn.range")]),
        "bgp": bgp,
        "pods": _obj("pod blocks and MTU", {
            "ipv4BlockSize": _int("prefix length of each node's IPv4 block "
                                  f"({fm.IPV4_BLOCK_SIZE})", 8, 32),
            "ipv6BlockSize": _int("prefix length of each node's IPv6 block "
                                  f"({fm.IPV6_BLOCK_SIZE})", 48, 128),
            "mtu": _int(f"pod interface MTU ({fm.POD_MTU})", 1280, 9216)}),
        "srv6": _obj("SRv6 between sites", {
            "enabled": _bool("default true when the section exists"),
            "encapMode": _str("encap or encap.red", enum=["encap", "encap.red"]),
            "decapIpv4": _str("IPv4 decapsulation", enum=["End.DX4", "End.DT4", "End.DT46"]),
            "decapIpv6": _str("IPv6 decapsulation", enum=["End.DT6", "End.DX6", "End.DT46"]),
            "scope": _str("node or site", enum=["node", "site"]),
            "locatorLength": _int(f"each node locator's length ({fm.LOCATOR_LENGTH})", 16, 112),
            "policies": _list("SRv6 policies", policy, 256),
            "underlayMtu": _int(f"smallest MTU on the encapsulated paths ({fm.UNDERLAY_MTU})",
                                1280, 9216),
            "datapath": _str("SRv6 datapath: auto (kernel seg6 where the probe finds it, else "
                             "eBPF), kernel or bpf", enum=["auto", "kernel", "bpf"]),
        }),
        "wan": _obj("routers joining the sites", {"routers": _list("WAN routers",
                                                                   _router(False), 256)}),
        "sites": _list("the sites (racks come from RackPeering objects)", site, 64,
                       minItems=1),
        "services": _services_schema(),
        "nodeDiscovery": _obj("how Kubernetes Nodes become fabric nodes", {
            "rackLabel": _str("Node label naming the rack (default "
                              "topology.kubernetes.io/zone)", maxLength=317),
            "siteLabel": _str("Node label naming the site, checked against the rack's "
                              "(default topology.kubernetes.io/region)", maxLength=317),
            "roleLabel": _str("Node label or annotation with the role, worker or gateway "
                              "(default flatroute.dev/role)", maxLength=317),
            "labelSelector": _str("only Nodes matching this selector (default: all)",
                                  maxLength=1024),
        }),
    }, ["asn", "sites"])


def _services_schema() -> S:
    comm = _list("standard communities", _str("ASN:value", pattern=r"^\d{1,5}:\d{1,5}$"), 32)
    comms = _obj("communities per source", {"loadBalancer": comm, "externalIP": comm,
                                            "clusterIP": comm})
    pool = _obj("addresses Services may get (LoadBalancer) or carry (ExternalIP)", {
        "name": NAME, "ipv4": NETS, "ipv6": NETS,
        "sites": _list("only nodes of these sites announce (default: all)", NAME, 64),
        "racks": _list("only nodes of these racks announce", NAME, 1000),
        "communities": comms,
        "autoAssign": _bool("hand addresses out to Services naming no pool (default true)"),
        "serviceSelector": _obj("Services whose labels match get this pool", {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"},
                            "description": "labels a Service must carry"}}),
    }, ["name"])
    return _obj("Service IPs over BGP (docs/services.md); Services are API objects here", {
        "loadBalancerClass": _str("spec.loadBalancerClass of our Services (default "
                                  "flatroute.dev/bgp)", maxLength=317),
        "default": _bool("Services of type LoadBalancer without a class are ours too"),
        "communities": comms,
        "clusterIPs": _obj("the ClusterIP range, announced as one aggregate",
                           {"ipv4": PREFIX, "ipv6": PREFIX}),
        "pools": _list("LoadBalancer pools", pool, 256),
    })


def fabric_config_status() -> S:
    return _obj("what the controller made of this fabric", {
        "observedGeneration": _int("metadata.generation of the last accepted spec", 0),
        "conditions": CONDITIONS,
        "leader": _str("identity of the controller replica that wrote this"),
        "nodes": _int("fabric nodes planned", 0),
        "published": _int("NodeStates published", 0),
        "unplacedNodes": _list("Kubernetes Nodes left out, and why", _obj("", {
            "name": _str("node"), "reason": _str("why")}), 1000),
        "heldBack": _list("nodes not (re)published because of a problem", _str("node"), 1000),
        "problems": _list("plan problems (exhaustion...)", _obj("", {
            "node": _str("node or rack"), "message": _str("problem")}), 1000),
        "errors": _list("validation errors of the last rejected input (file-style: "
                        "object: field: message)", _str("error"), 1000),
    })


def rack_peering_spec() -> S:
    return _obj("one rack: its site and its ToRs (metadata.name is the rack name)", {
        "site": {**NAME, "description": "the FabricConfig site this rack belongs to"},
        "tors": _list("one or two ToRs", _router(True), 2, minItems=1),
        "bfd": _bool("BFD on the rack's ToRs (default: spec.bgp.bfd.enabled)"),
    }, ["site", "tors"])


def node_state_spec() -> S:
    """flatroute/nodestate.py spec_doc(), null fields omitted."""
    peer = _obj("a BGP peer", {
        "name": _str("the ToR"), "asn": ASN, "address": _str("peer address (absent: "
                                                             "unnumbered)", maxLength=45),
        "localAddress": _str("our address", maxLength=45),
        "families": _list("address families", _str("", enum=["ipv4", "ipv6"]), 2),
        "ipv6NextHop": IPV6, "interface": _str("for unnumbered peers", maxLength=15),
        "bfd": _bool("BFD on this session (absent: as bgp.bfd)"),
    }, ["name", "asn"])
    return _obj("desired state, written by the controller only; a spec with `removed` (and "
                "`node`) alone is the tombstone of a node removed from the fabric", {
        "node": _str("the node"), "fabric": _str("the FabricConfig"), "site": _str("site"),
        "removed": _obj("present: this node was removed from the fabric; its speaker "
                        "withdraws everything (flatroute/tombstone.py)", {
            "at": _str("when it left the fabric (RFC 3339)", maxLength=40),
            "reason": _str("why", maxLength=256)}, ["at"]),
        "rack": _str("rack"), "role": _str("worker or gateway", enum=["worker", "gateway"]),
        "asn": ASN, "routerId": IPV4, "mtu": _int("pod MTU", 1280, 9216),
        "bgp": _obj("session options", {
            "holdTime": _int("s", 3, 65535), "keepalive": _int("s", 1, 21845),
            "gracefulRestart": _int("s", 0, 4095),
            "md5": _obj("secret reference", {
                "file": _str("path"),
                "kubernetesSecret": _obj("Secret", {"name": _str("name"), "key": _str("key")}),
            }),
            "communities": _list("communities", _str(""), 32),
            "bfd": _obj("present: BFD on", {"minRx": _int("ms", 10, 60000),
                                            "minTx": _int("ms", 10, 60000),
                                            "multiplier": _int("", 2, 255)}),
            "ipv4OverIpv6": _bool("IPv4 over the IPv6 sessions (RFC 8950)"),
            "maxPrefixes": _int("maximum-prefix the ToRs apply to this node", 1, 1000000),
        }),
        "uplinks": _list("uplink addresses", _obj("", {
            "tor": _str("ToR"), "ipv4": IFACE, "ipv6": IFACE,
            "unnumbered": _bool("unnumbered uplink")}, ["tor"]), 2),
        "peers": _list("BGP peers", peer, 8),
        "podBlocks": _obj("pod blocks", {"ipv4": NETS, "ipv6": NETS}),
        "srv6": _obj("SRv6", {
            "enabled": _bool("on"), "encapMode": _str("", enum=["encap", "encap.red"]),
            "datapath": _str("", enum=["auto", "kernel", "bpf"]), "locator": PREFIX,
            "localSids": _list("seg6local SIDs", _obj("", {
                "sid": IPV6, "behavior": _str("", enum=["End", "End.DX4", "End.DX6",
                                                       "End.DT4", "End.DT6", "End.DT46"])},
                ["sid", "behavior"]), 16),
            "routes": _list("seg6 encapsulation routes", _obj("", {
                "prefix": PREFIX, "segments": _list("SIDs", IPV6, 16, minItems=1),
                "target": _str("node or prefix owner"), "policy": _str("policy name")},
                ["prefix", "segments"]), 100000),
        }),
        "services": _list("service routes this node announces (absent: none)",
                          _service_route(), 100000),
    }, ["node"], rules=[("has(self.removed) || (has(self.asn) && has(self.routerId))",
                         "a NodeState needs asn and routerId, unless it is a tombstone "
                         "(removed)")])


def _service_route(announced_to: bool = False) -> S:
    props: dict[str, S] = {
        "prefix": PREFIX, "service": _str("namespace/name, or ClusterIP range", maxLength=317),
        "source": _str("", enum=["LoadBalancer", "ExternalIP", "ClusterIP"]),
        "reason": _str("why this node announces it", maxLength=1024),
        "communities": _list("communities", _str(""), 32)}
    if announced_to:
        props["announcedTo"] = _list("peers it is sent to", _str("", maxLength=45), 16)
    return _obj("a service route", props, ["prefix", "service", "source"])


def node_state_status() -> S:
    return _obj("what the node's speaker reports; written by that speaker only", {
        "observedGeneration": _int("metadata.generation of the spec the speaker applied", 0),
        "appliedSpecHash": _str("content hash of the applied spec", maxLength=64),
        "sessionsUp": _str("established/configured sessions, e.g. 2/2", maxLength=16),
        "sessionsEstablished": _int("sessions Established", 0),
        "sessionsTotal": _int("sessions configured", 0),
        "sessions": _list("BGP sessions", _obj("", {
            "peer": _str("ToR name"), "address": _str("peer address", maxLength=64),
            "asn": ASN, "state": _str("BGP FSM state", maxLength=32),
            "prefixesReceived": _int("prefixes received", 0),
            "lastError": _str("last NOTIFICATION or connect error", maxLength=1024),
        }, ["peer", "state"]), 16),
        "announced": _list("prefixes announced to the ToRs", PREFIX, 64),
        "announcedCount": _int("len(announced)", 0),
        "services": _list("service routes: the service, why, and to whom they are sent",
                          _service_route(announced_to=True), 100000),
        "installed": _obj("what the speaker holds in the kernel (route protocol 70)", {
            "learned": _int("routes learned from the ToRs", 0),
            "encap": _int("seg6 encapsulation routes", 0),
            "sids": _list("seg6local SIDs installed", IPV6, 16),
        }),
        "missingFeatures": _list("kernel features missing (e.g. vrf)", _str("", maxLength=64),
                                 32),
        "srv6Datapath": _str("the SRv6 datapath the speaker runs", enum=["kernel", "bpf"]),
        "capabilities": _list("the kernel capability probe: every check, with the reason of "
                              "each no", _obj("", {
                                  "name": _str("check", maxLength=64), "ok": _bool("works"),
                                  "reason": _str("why not, in the kernel's words",
                                                 maxLength=1024)}, ["name", "ok"]), 64),
        "lastError": _str("last apply error; empty when the last apply succeeded",
                          maxLength=4096),
        "conditions": CONDITIONS,
    })


# -- CRDs -----------------------------------------------------------------------------------
def _column(name: str, path: str, typ: str = "string", priority: int = 0,
            desc: str = "") -> S:
    out: S = {"name": name, "type": typ, "jsonPath": path}
    if priority:
        out["priority"] = priority
    if desc:
        out["description"] = desc
    return out


AGE = _column("Age", ".metadata.creationTimestamp", "date")
READY = '.status.conditions[?(@.type=="Ready")].status'


def _crd(kind: str, plural: str, short: list[str], spec: S, status: S | None,
         columns: list[S], desc: str) -> S:
    schema: S = {"type": "object", "description": desc, "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
        "metadata": {"type": "object"}, "spec": spec}, "required": ["spec"]}
    version: S = {"name": VERSION, "served": True, "storage": True,
                  "schema": {"openAPIV3Schema": schema}, "additionalPrinterColumns": columns}
    if status is not None:
        schema["properties"]["status"] = status
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}",
                     "labels": {"app.kubernetes.io/part-of": "flatroute"}},
        "spec": {"group": GROUP, "scope": "Cluster",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                           "listKind": f"{kind}List", "shortNames": short,
                           "categories": CATEGORIES},
                 "versions": [version]},
    }


def crds() -> list[S]:
    return [
        _crd("FabricConfig", "fabricconfigs", ["frfabric"], fabric_config_spec(),
             fabric_config_status(), [
                 _column("Scheme", ".spec.asn.scheme"),
                 _column("Nodes", ".status.nodes", "integer"),
                 _column("Published", ".status.published", "integer"),
                 _column("Ready", READY),
                 _column("Reason", '.status.conditions[?(@.type=="Ready")].reason'),
                 _column("Leader", ".status.leader", priority=1),
                 AGE],
             "fabric-wide settings; the controller plans the fabric named by its flag"),
        _crd("RackPeering", "rackpeerings", ["frrack"], rack_peering_spec(), None, [
            _column("Site", ".spec.site"),
            _column("ToR-A", ".spec.tors[0].name"),
            _column("ASN-A", ".spec.tors[0].asn", "integer"),
            _column("ToR-B", ".spec.tors[1].name"),
            _column("ASN-B", ".spec.tors[1].asn", "integer"),
            AGE], "one rack's ToRs (the network team's side of the node peering)"),
        _crd("NodeState", "nodestates", ["frns"], node_state_spec(), node_state_status(), [
            _column("Site", ".spec.site", priority=1),
            _column("Rack", ".spec.rack", priority=1),
            _column("ASN", ".spec.asn", "integer"),
            _column("Sessions Up", ".status.sessionsUp"),
            _column("Announced", ".status.announcedCount", "integer"),
            _column("Generation", ".metadata.generation", "integer",
                    desc="the desired spec's generation"),
            _column("Applied Generation", ".status.observedGeneration", "integer",
                    desc="the generation the speaker applied"),
            _column("Ready", READY),
            _column("Last Error", ".status.lastError", priority=1),
            AGE], "one node's desired state (spec, from the controller) and what its "
                  "speaker applied (status); metadata.name is the node name"),
    ]


def render() -> str:
    head = ("# GENERATED by `python -m kube.crds > deploy/crds.yaml`; do not edit.\n"
            "# flatroute's public API: flatroute.dev/v1alpha1 (see docs/kubernetes.md).\n")
    return head + yaml.safe_dump_all(crds(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
