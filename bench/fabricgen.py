"""Generate large fabric descriptions for benchmarks (and the 50-node lab test)."""

from __future__ import annotations

from typing import Any


def generate(sites: int, nodes_per_site: int, *, racks_per_site: int = 2,
             scope: str = "site", srv6: bool = True) -> dict[str, Any]:
    """A valid fabric: `sites` sites of dual-ToR racks under two spines, nodes spread across
    racks, one WAN router joining the sites (IPv6 only).

    With scope 'site', the first node of each site is its SRv6 gateway.
    """
    site_docs = []
    node_docs = []
    for s in range(sites):
        racks = []
        for r in range(racks_per_site):
            rack = f"s{s}-r{r}"
            tors = []
            for t in range(2):
                idx = (s * racks_per_site + r) * 2 + t
                tors.append({
                    "name": f"{rack}-t{t}", "asn": 65000 + idx % 30000 + 1,
                    "routerId": f"10.{200 + idx // 65536}.{idx // 256 % 256}.{idx % 256}",
                    "platform": "frr",
                    "peering": {
                        "ipv4": f"10.{s // 2}.{(s % 2) * 128 + r * 2 + t}.1/24",
                        "ipv6": f"fd00:{s:x}:{r * 2 + t:x}::1/64",
                    },
                })
            racks.append({"name": rack, "tors": tors})
        spines = [{"name": f"s{s}-sp{i}", "asn": 64000 + s,
                   "routerId": f"10.199.{s}.{i + 1}", "platform": "frr"} for i in range(2)]
        site: dict[str, Any] = {
            "name": f"site{s}",
            "spines": spines,
            "pools": {"ipv4": [f"10.{64 + s}.0.0/16"], "ipv6": [f"fd10:{s:x}::/56"]},
            "racks": racks,
        }
        if srv6:
            site["locatorBlock"] = f"fcbb:{s:x}::/32"
        site_docs.append(site)
        for n in range(nodes_per_site):
            node: dict[str, Any] = {"name": f"s{s}-n{n}", "rack": f"s{s}-r{n % racks_per_site}"}
            if scope == "site" and n == 0:
                node["role"] = "gateway"
            node_docs.append(node)
    return {
        "apiVersion": "flatroute.dev/v1", "kind": "Fabric", "metadata": {"name": "generated"},
        "spec": {
            "asn": {"scheme": "per-node", "range": {"start": 4200000000, "end": 4200999999}},
            "pods": {"ipv4BlockSize": 26, "ipv6BlockSize": 122, "mtu": 1400},
            "srv6": {"enabled": srv6, "scope": scope, "locatorLength": 64},
            "wan": {"routers": [{"name": "wan1", "asn": 63999, "routerId": "10.198.0.1",
                                 "platform": "frr", "locator": "fcbb:ffff::/32"}]},
            "sites": site_docs,
            "nodes": node_docs,
        },
    }
