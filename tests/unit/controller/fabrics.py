"""Small generated fabrics for the controller and SRv6 planning tests (no root)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flatroute.fabric import Fabric, parse_fabric


def fabric_doc(
    sites: int = 2,
    nodes: dict[int, list[str]] | None = None,
    *,
    scope: str = "node",
    gateways: bool = False,
    policies: list[dict[str, Any]] | None = None,
    v4_pool_prefix: int = 16,
    v6: bool = True,
    encap_mode: str = "encap",
    wan_locator: bool = True,
) -> dict[str, Any]:
    """Sites s0..s{n-1}, one rack r<i> with one ToR each; `nodes` maps site index to names
    (default: two nodes per site, s<i>-n0 and s<i>-n1). With `gateways`, the first node of
    each site has role gateway."""
    if nodes is None:
        nodes = {i: [f"s{i}-n0", f"s{i}-n1"] for i in range(sites)}
    site_docs = []
    for i in range(sites):
        pools: dict[str, list[str]] = {"ipv4": [f"10.{i}.0.0/{v4_pool_prefix}"]}
        if v6:
            pools["ipv6"] = [f"fd00:10:{i:x}::/56"]
        site_docs.append({
            "name": f"s{i}", "pools": pools, "locatorBlock": f"fcbb:bb00:{i + 1:x}::/48",
            "racks": [{"name": f"r{i}", "tors": [{
                "name": f"tor{i}", "asn": 65100 + i, "routerId": f"10.255.{i}.1",
                "peering": {"ipv4": f"10.200.{i}.1/24"}}]}],
        })
    node_docs = []
    for i in range(sites):
        for j, name in enumerate(nodes.get(i, [])):
            doc: dict[str, Any] = {"name": name, "rack": f"r{i}"}
            if gateways and j == 0:
                doc["role"] = "gateway"
            node_docs.append(doc)
    wan: dict[str, Any] = {"name": "wan1", "asn": 65000, "routerId": "10.255.255.1"}
    if wan_locator:
        wan["locator"] = "fcbb:bb00:ff::/48"
    return {
        "apiVersion": "flatroute.dev/v1", "kind": "Fabric", "metadata": {"name": "t"},
        "spec": {
            "asn": {"scheme": "per-node", "range": {"start": 4200000001, "end": 4200009999}},
            # a jumbo-frame underlay: pods keep MTU 1500 whatever the policies' segments
            "srv6": {"enabled": True, "scope": scope, "encapMode": encap_mode,
                     "policies": policies or [], "underlayMtu": 9000},
            "wan": {"routers": [wan]},
            "sites": site_docs,
            "nodes": node_docs,
        },
    }


def to_fabric(doc: dict[str, Any]) -> Fabric:
    return parse_fabric(yaml.safe_dump(doc), "fabric.yaml")


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path
