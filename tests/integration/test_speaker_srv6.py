"""SRv6 programming on the kernel datapath (seg6 routes), ownership and bad input. No ToR
needed: the node's uplink leads nowhere. The same behaviours on the eBPF datapath:
test_speaker_srv6_bpf.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration import speaker_lab as L
from tests.netns_util import Netns, need_kernel_srv6, need_root, sh

pytestmark = pytest.mark.root

SRV6 = {
    "enabled": True, "encapMode": "encap", "datapath": "kernel", "locator": "fcbb:bb00:1:1::/64",
    "localSids": [{"sid": "fcbb:bb00:1:1::1", "behavior": "End"},
                  {"sid": "fcbb:bb00:1:1::4", "behavior": "End.DX4"},
                  {"sid": "fcbb:bb00:1:1::6", "behavior": "End.DT6"},
                  {"sid": "fcbb:bb00:1:1::66", "behavior": "End.DX6"},
                  {"sid": "fcbb:bb00:1:1::44", "behavior": "End.DT4"}],
    "routes": [{"prefix": "10.245.0.0/26", "segments": ["fcbb:bb00:2:1::4"], "target": "os-n1"},
               {"prefix": "fd00:10:245::/122", "segments": ["fcbb:bb00:ff::1",
                                                            "fcbb:bb00:2:1::6"],
                "target": "os-n1"}],
}


@pytest.fixture(scope="module")
def lab() -> Iterator[L.Lab]:
    need_root()
    lab = L.build(Netns(), n_tors=1)  # no FRR started: sessions stay down, that is fine here
    try:
        yield lab
    finally:
        L.cleanup(lab)


def _owned(lab: L.Lab) -> str:
    return (sh("ip", "route", "show", "proto", "70", ns=lab.node_ns).stdout
            + sh("ip", "-6", "route", "show", "proto", "70", ns=lab.node_ns).stdout)


def _error(lab: L.Lab) -> str:
    return str(L.status(lab).get("lastError") or "")


def _spec(lab: L.Lab, **kw: Any) -> dict[str, Any]:
    return L.node_spec(lab, srv6=kw.pop("srv6", SRV6), **kw)


def test_missing_node_state_gives_clear_status(lab: L.Lab) -> None:
    L.start_speaker(lab)
    L.wait_for(lambda: "no node state" in _error(lab), 20)
    assert _owned(lab) == ""
    assert L.status(lab)["generation"] is None


def test_malformed_node_state_gives_clear_status(lab: L.Lab) -> None:
    L.publish(lab, '{"kind": "NodeState", "spec": {')
    L.wait_for(lambda: "not valid JSON" in _error(lab), 10)
    assert _owned(lab) == ""


def test_unknown_peer_applies_nothing(lab: L.Lab) -> None:
    spec = _spec(lab)
    spec["peers"].append({"name": "tor-nowhere", "asn": 65099, "address": "10.9.9.9",
                          "localAddress": "10.1.1.11", "families": ["ipv4"]})
    L.publish(lab, json.dumps({"apiVersion": "flatroute.dev/v1", "kind": "NodeState",
                               "metadata": {"name": "n1"}, "spec": spec, "generation": "g1"}))
    L.wait_for(lambda: "unknown peer" in _error(lab), 10)
    assert "tor-nowhere" in _error(lab)
    assert _owned(lab) == ""  # not one SID or encap route of that state was applied
    assert not L.status(lab)["announced"]


def test_srv6_routes_appear_in_kernel(lab: L.Lab) -> None:
    need_kernel_srv6()
    L.publish(lab, _spec(lab))
    L.wait_for(lambda: L.status(lab).get("installed", {}).get("sids") == 4, 15)
    six = L.routes(lab.node_ns, "-6")
    assert "fcbb:bb00:1:1::1  encap seg6local action End dev flrsid proto 70" in six
    assert "encap seg6local action End.DX4 nh4 0.0.0.0 dev flrsid proto 70" in six
    assert "encap seg6local action End.DT6 table main dev flrsid proto 70" in six
    assert "encap seg6local action End.DX6 nh6 :: dev flrsid proto 70" in six
    assert "fcbb:bb00:1:1::44" not in six  # End.DT4 needs a VRF: reported, not programmed
    four = L.routes(lab.node_ns)
    assert "10.245.0.0/26  encap seg6 mode encap segs 1 [ fcbb:bb00:2:1::4 ] dev tor1" in four
    assert "segs 2 [ fcbb:bb00:ff::1 fcbb:bb00:2:1::6 ]" in six
    assert "fcbb:bb00:1:1::1" in sh("ip", "sr", "tunsrc", "show", ns=lab.node_ns).stdout
    assert sh("sysctl", "-n", "net.ipv6.conf.all.seg6_enabled", ns=lab.node_ns).stdout.strip() \
        == "1"
    assert sh("sysctl", "-n", "net.ipv4.conf.tor1.rp_filter", ns=lab.node_ns).stdout.strip() \
        == "0"
    assert ",UP" in sh("ip", "link", "show", "flrsid", ns=lab.node_ns).stdout
    st = L.status(lab)
    assert st["srv6Datapath"] == "kernel"
    assert any(f.startswith("vrf:") for f in st["missingKernelFeatures"])
    assert st["skipped"][0]["reason"] == "missing kernel feature: vrf"
    # the locator is IPv6: with only an IPv4 session (no RFC 8950 here) it has nowhere to go
    assert st["announced"] == ["10.244.0.0/26"]
    with open(f"{lab.run_dir}/node.json", encoding="utf-8") as fh:
        nf = json.load(fh)
    assert nf["podBlocks"]["ipv4"] == ["10.244.0.0/26"] and nf["mtu"] == 1500


def test_srv6_routes_removed_when_no_longer_desired_foreign_kept(lab: L.Lab) -> None:
    need_kernel_srv6()
    sh("ip", "-6", "route", "add", "fcbb:ffff::1/128", "encap", "seg6local", "action", "End",
       "dev", "lo", ns=lab.node_ns)
    sh("ip", "route", "add", "10.246.0.0/26", "encap", "seg6", "mode", "encap", "segs",
       "fcbb:ffff::4", "dev", "tor1", ns=lab.node_ns)
    srv6 = dict(SRV6, localSids=SRV6["localSids"][:1],  # type: ignore[index]
                routes=[{"prefix": "10.245.0.64/26", "segments": ["fcbb:bb00:2:2::4"],
                         "target": "os-n2"}], encapMode="encap.red")
    L.publish(lab, _spec(lab, srv6=srv6))
    L.wait_for(lambda: L.status(lab).get("installed", {}).get("sids") == 1, 15)
    owned = _owned(lab)
    assert "End.DX4" not in owned and "End.DT6" not in owned and "10.245.0.0/26" not in owned
    assert "10.245.0.64/26  encap seg6 mode encap.red" in owned
    assert "fcbb:ffff::1" in L.routes(lab.node_ns, "-6")  # foreign: left alone
    assert "10.246.0.0/26" in L.routes(lab.node_ns)


def test_bad_update_keeps_last_good_state(lab: L.Lab) -> None:
    need_kernel_srv6()
    before = _owned(lab)
    gen = L.status(lab)["generation"]
    L.publish(lab, '{"kind": "NodeState", "spec": {"node": "n1", "asn": "x"}}')
    L.wait_for(lambda: "invalid node state" in _error(lab), 10)
    assert _owned(lab) == before
    assert L.status(lab)["generation"] == gen
