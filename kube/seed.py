"""A fabric file as Kubernetes objects: FabricConfig, one RackPeering per rack, one Node per
node (rack and site as the default topology labels, pinned uplinks as the annotation).

The inverse of `kube.fabric.assemble`: what a platform team would apply to move a
static fabric into the API, and what `flatroute lab up --kubernetes` seeds its API with.
"""

from __future__ import annotations

import json
from typing import Any

from kube.crds import API_VERSION
from kube.fabric import (
    ASN_ANNOTATION,
    DEFAULT_RACK_LABEL,
    DEFAULT_ROLE_KEY,
    DEFAULT_SITE_LABEL,
    UPLINKS_ANNOTATION,
)


def node_object(name: str, rack: str, site: str | None = None, *, role: str | None = None,
                asn: int | None = None, addresses: tuple[str, ...] = ()) -> dict[str, Any]:
    labels = {DEFAULT_RACK_LABEL: rack, "kubernetes.io/hostname": name}
    if site:
        labels[DEFAULT_SITE_LABEL] = site
    if role:
        labels[DEFAULT_ROLE_KEY] = role
    notes = {ASN_ANNOTATION: str(asn)} if asn else {}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": notes},
            "status": {"addresses": [{"type": "InternalIP", "address": a} for a in addresses]
                       + [{"type": "Hostname", "address": name}]}}


def objects_from_fabric(doc: dict[str, Any], fabric: str = "default"
                        ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(FabricConfig, RackPeerings, Nodes) equivalent to a fabric document."""
    spec = doc["spec"]
    racks = []
    rack_site = {}
    for s in spec["sites"]:
        for r in s["racks"]:
            rack_site[r["name"]] = s["name"]
            racks.append({"apiVersion": API_VERSION, "kind": "RackPeering",
                          "metadata": {"name": r["name"]},
                          "spec": {"site": s["name"], "tors": r["tors"],
                                   **({"bfd": r["bfd"]} if "bfd" in r else {})}})
    sites = [{k: v for k, v in s.items() if k != "racks"} for s in spec["sites"]]
    config = {"apiVersion": API_VERSION, "kind": "FabricConfig", "metadata": {"name": fabric},
              "spec": {**{k: v for k, v in spec.items() if k not in ("nodes", "sites")},
                       "sites": sites}}
    nodes = []
    for n in spec.get("nodes") or ():
        obj = node_object(n["name"], n["rack"], rack_site.get(n["rack"]), role=n.get("role"),
                          asn=n.get("asn"))
        if n.get("uplinks"):
            obj["metadata"]["annotations"][UPLINKS_ANNOTATION] = json.dumps(n["uplinks"])
        nodes.append(obj)
    return config, racks, nodes
