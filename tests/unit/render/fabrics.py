"""Synthetic fabrics for render tests: a big rack (peer groups) and an unnumbered rack."""

from __future__ import annotations

from flatroute.fabric import Fabric, parse_fabric

BIG_RACK = """
apiVersion: flatroute.dev/v1
kind: Fabric
metadata: {name: big-rack}
spec:
  asn: {scheme: per-rack, range: {start: 4220000000, end: 4220000999}}
  bgp:
    bfd: {enabled: true, minRx: 200, minTx: 200, multiplier: 4}
    md5: {secretRef: {file: SECRET_FILE}}
    communities: ["65300:1", "65300:2"]
    maxPrefixes: 20
  sites:
    - name: s1
      pools: {ipv4: [10.50.0.0/16], ipv6: ["fd00:50::/56"]}
      spines:
        - {name: s1-spine, asn: 65300, routerId: 10.255.3.9, platform: frr}
      racks:
        - name: r1
          tors:
            - name: r1-tor
              asn: 65301
              routerId: 10.255.3.1
              platform: frr
              peering: {ipv4: 10.30.1.1/24, ipv6: "fd00:30:1::1/64"}
        - name: r2
          tors:
            - name: r2-tor
              asn: 65302
              routerId: 10.255.3.2
              platform: frr
              peering: {mode: unnumbered}
              ports: {r2-n1: swp1, r2-n2: swp2}
  nodes:
NODES
"""


def big_rack_text(secret_file: str = "/nonexistent/flatroute-md5", rack1: int = 10) -> str:
    nodes = [f"    - {{name: r1-n{i:02d}, rack: r1}}" for i in range(1, rack1 + 1)]
    nodes += ["    - {name: r2-n1, rack: r2}", "    - {name: r2-n2, rack: r2}"]
    return BIG_RACK.replace("SECRET_FILE", secret_file).replace("NODES", "\n".join(nodes))


def big_rack(secret_file: str = "/nonexistent/flatroute-md5", rack1: int = 10) -> Fabric:
    return parse_fabric(big_rack_text(secret_file, rack1), "big-rack.yaml")
