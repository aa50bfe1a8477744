"""Defaults are defined once, in the fabric model; what states them elsewhere follows it."""

from __future__ import annotations

from pathlib import Path

from flatroute.fabric import model as fm
from flatroute.fabric import parse_fabric

DOC = Path(__file__).resolve().parents[3] / "docs" / "fabric.md"

MINIMAL = """
apiVersion: flatroute.dev/v1
kind: Fabric
metadata: {name: t}
spec:
  asn: {scheme: cluster, cluster: 64512}
  bgp: {bfd: {}}
  pods: {}
  srv6: {}
  sites:
    - name: s
      pools: {ipv4: [10.0.0.0/16]}
      locatorBlock: fd00:5::/48
      racks:
        - name: r
          tors: [{name: t1, asn: 65001, routerId: 10.9.0.1, peering: {ipv4: 10.1.0.1/24}}]
"""


def test_empty_sections_take_the_model_s_defaults() -> None:
    f = parse_fabric(MINIMAL)
    assert (f.bgp.hold_time, f.bgp.keepalive, f.bgp.graceful_restart, f.bgp.max_prefixes) == (
        fm.HOLD_TIME, fm.KEEPALIVE, fm.GRACEFUL_RESTART, fm.MAX_PREFIXES)
    assert (f.bgp.bfd.min_rx_ms, f.bgp.bfd.min_tx_ms, f.bgp.bfd.multiplier) == (
        fm.BFD_MIN_RX_MS, fm.BFD_MIN_TX_MS, fm.BFD_MULTIPLIER)
    assert f.bgp.bfd.enabled  # the section turns it on
    assert f.pods == fm.PodOptions(fm.IPV4_BLOCK_SIZE, fm.IPV6_BLOCK_SIZE, fm.POD_MTU)
    s = f.srv6
    assert s.enabled  # the section turns it on
    assert (s.encap_mode, s.decap_ipv4, s.decap_ipv6, s.scope, s.locator_length,
            s.underlay_mtu, s.datapath) == (
        fm.ENCAP_MODE, fm.DECAP_IPV4, fm.DECAP_IPV6, fm.SEGMENT_SCOPE, fm.LOCATOR_LENGTH,
        fm.UNDERLAY_MTU, fm.SRV6_DATAPATH)
    # one value type from the fabric file to the node state: its defaults are these
    assert fm.BgpOptions().bfd == fm.Bfd(False, fm.BFD_MIN_RX_MS, fm.BFD_MIN_TX_MS,
                                         fm.BFD_MULTIPLIER)


def test_the_fabric_reference_states_the_model_s_defaults() -> None:
    text = DOC.read_text()
    for line in (f"| `holdTime`, `keepalive` | {fm.HOLD_TIME}, {fm.KEEPALIVE} |",
                 f"| `gracefulRestart` | {fm.GRACEFUL_RESTART} |",
                 f"| `maxPrefixes` | {fm.MAX_PREFIXES} |",
                 f"`ipv4BlockSize` ({fm.IPV4_BLOCK_SIZE}), `ipv6BlockSize` ({fm.IPV6_BLOCK_SIZE})",
                 f"`mtu` ({fm.POD_MTU})"):
        assert line in text, line
