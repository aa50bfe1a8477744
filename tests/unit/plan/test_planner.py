"""The planner: allocation invariants, stability under churn, determinism, ledger round-trip."""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flatroute import gcpause
from flatroute.fabric import parse_fabric
from flatroute.fabric.model import Fabric
from flatroute.plan import Ledger, nodes, plan
from flatroute.plan.ledger import expire, ledger_from_doc, ledger_to_doc, ledger_to_json
from flatroute.plan.model import Behavior, Family
from flatroute.plan.output import plan_to_json
from tests.conftest import EXAMPLES

TWO_SITE: dict[str, Any] = yaml.safe_load((EXAMPLES / "two-site.yaml").read_text())


def small_fabric(names: list[str], *, v4_size: int = 28, pool: str = "10.50.0.0/24") -> Fabric:
    """A one-site fabric whose nodes have auto-assigned uplinks and ASNs."""
    doc = {
        "apiVersion": "flatroute.dev/v1", "kind": "Fabric", "metadata": {"name": "t"},
        "spec": {
            "asn": {"scheme": "per-node", "range": {"start": 65500, "end": 65534}},
            "pods": {"ipv4BlockSize": v4_size, "ipv6BlockSize": 124},
            "sites": [{"name": "s", "pools": {"ipv4": [pool], "ipv6": ["fd00:50::/116"]},
                       "racks": [{"name": "r", "tors": [
                           {"name": "tor", "asn": 65000, "routerId": "10.0.0.1",
                            "peering": {"ipv4": "10.1.0.1/26", "ipv6": "fd00:1::1/64"}}]}]}],
            "nodes": [{"name": n, "rack": "r"} for n in names],
        },
    }
    return parse_fabric(yaml.safe_dump(doc))


def blocks_of(p: Any) -> dict[str, list[str]]:
    return {n.name: [str(b) for b in (*n.ipv4_blocks, *n.ipv6_blocks)] for n in p.nodes}


def test_two_site_plan_shape() -> None:
    f = parse_fabric(yaml.safe_dump(TWO_SITE))
    p = plan(f)
    assert not p.problems
    n = p.node("tk-n1")
    assert n.site == "tokyo"
    assert {str(x.address) for x in n.peers} == {"10.1.1.1", "fd00:1:1::1", "10.1.2.1",
                                                  "fd00:1:2::1"}
    assert all(x.families in ((Family.IPV4,), (Family.IPV6,)) for x in n.peers)
    assert n.locator is not None and f.site("tokyo").locator_block is not None
    assert n.locator.subnet_of(f.site("tokyo").locator_block)
    assert n.sid(Behavior.END_DX4) is not None and n.sid(Behavior.END_DT6) is not None
    # tokyo nodes encapsulate toward every osaka block, through the policy's waypoint wan1
    tokyo = p.site("tokyo")
    osaka_blocks = {str(b) for x in p.nodes if x.site == "osaka"
                    for b in (*x.ipv4_blocks, *x.ipv6_blocks)}
    assert {str(s.prefix) for s in tokyo.segments} == osaka_blocks
    assert all(str(s.segments[0]) == "fcbb:bb00:ff::1" for s in tokyo.segments)
    assert all(s.policy == "osaka-via-wan1" for s in tokyo.segments)
    # osaka has no policy: one SID, the decapsulating node's
    assert all(len(s.segments) == 1 for s in p.site("osaka").segments)


def test_announcements_are_aggregates_and_locator_only() -> None:
    p = plan(parse_fabric(yaml.safe_dump(TWO_SITE)))
    for n in p.nodes:
        assert all(a.prefixlen in (26, 122, 64) for a in n.announcements)


def test_same_input_same_plan_byte_for_byte() -> None:
    f = parse_fabric(yaml.safe_dump(TWO_SITE))
    assert plan_to_json(plan(f)) == plan_to_json(plan(f))
    # and node order in the file does not matter for allocations
    shuffled = copy.deepcopy(TWO_SITE)
    shuffled["spec"]["nodes"].reverse()
    assert blocks_of(plan(parse_fabric(yaml.safe_dump(shuffled)))) == blocks_of(plan(f))


def test_cluster_and_per_rack_asns() -> None:
    single = plan(parse_fabric((EXAMPLES / "single-rack.yaml").read_text()))
    assert {n.asn for n in single.nodes} == {64512}
    doc = copy.deepcopy(TWO_SITE)
    doc["spec"]["asn"] = {"scheme": "per-rack", "range": {"start": 64600, "end": 64700}}
    p = plan(parse_fabric(yaml.safe_dump(doc)))
    assert p.node("tk-n1").asn == p.node("tk-n2").asn != p.node("os-n1").asn
    assert p.ledger.racks == {"os-r1": 64600, "tk-r1": 64601}


def test_rfc8950_single_session_per_tor() -> None:
    p = plan(parse_fabric((EXAMPLES / "leaf-spine.yaml").read_text()))
    n = p.node("r1-n1")
    assert len(n.peers) == 2
    for peer in n.peers:
        assert peer.families == (Family.IPV4, Family.IPV6)
        assert peer.address is not None and peer.address.version == 6
        assert peer.ipv6_next_hop == peer.local_address
    assert p.node("r2-n3").asn == 4210000100  # pinned


def test_exhaustion_is_reported_not_raised() -> None:
    f = small_fabric([f"n{i}" for i in range(6)], v4_size=26)  # a /24 holds four /26
    p = plan(f)
    assert [x.node for x in p.problems] == ["n4", "n5"]
    assert "exhausted" in p.problems[0].message
    assert p.node("n5").ipv4_blocks == ()
    assert len(p.node("n3").ipv4_blocks) == 1


def test_retired_nodes_keep_allocations_until_grace_expires() -> None:
    first = plan(small_fabric(["a", "b", "c"]))
    second = plan(small_fabric(["a", "c"]), first.ledger, now="2026-01-01T00:00:00+00:00")
    assert second.ledger.nodes["b"].retired_at == "2026-01-01T00:00:00+00:00"
    third = plan(small_fabric(["a", "c", "d"]), second.ledger)
    assert blocks_of(third)["d"] != blocks_of(first)["b"]  # b's blocks are still held
    from datetime import datetime

    t0 = datetime.fromisoformat("2026-01-01T00:00:00+00:00").timestamp()
    assert "b" in expire(third.ledger, t0 + 10, 3600).nodes
    freed = expire(third.ledger, t0 + 3600, 3600)
    assert "b" not in freed.nodes
    fourth = plan(small_fabric(["a", "c", "d", "e"]), freed)
    assert blocks_of(fourth)["e"] == blocks_of(first)["b"]


def test_returning_node_gets_its_blocks_back() -> None:
    first = plan(small_fabric(["a", "b"]))
    gone = plan(small_fabric(["a"]), first.ledger, now="2026-01-01T00:00:00+00:00")
    back = plan(small_fabric(["a", "b"]), gone.ledger)
    assert blocks_of(back) == blocks_of(first)
    assert back.ledger.nodes["b"].retired_at is None


def test_replan_reuses_unchanged_node_plans() -> None:
    names = [f"n{i}" for i in range(5)]
    first = plan(small_fabric(names))
    again = plan(small_fabric([*names, "n9"]), first.ledger, previous=first)
    for name in names:
        assert again.node(name) is first.node(name)


def test_plan_leaves_the_cyclic_collector_alone() -> None:
    # The planner is pure: pausing the collector is its callers' business (flatroute.gcpause).
    import gc

    f = small_fabric(["a", "b"])
    seen: list[bool] = []
    real = nodes.NodePlanner.plan

    def spy(self: nodes.NodePlanner, *args: Any) -> Any:
        seen.append(gc.isenabled())
        return real(self, *args)

    was = gc.isenabled()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(nodes.NodePlanner, "plan", spy)
            gc.enable()
            plan(f)
            assert gc.isenabled()
            gc.disable()
            plan(f)
            assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert seen == [True, True, False, False]


def test_gcpause_pauses_and_restores_the_collector() -> None:
    import gc

    was = gc.isenabled()
    try:
        gc.enable()
        with gcpause.paused():
            assert not gc.isenabled()
        assert gc.isenabled()  # restored
        gc.disable()
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller's pause (the controller's) is left alone
        gc.enable()
        with pytest.raises(ZeroDivisionError), gcpause.paused():
            _ = 1 // 0
        assert gc.isenabled()  # restored on an error too
    finally:
        (gc.enable if was else gc.disable)()


def test_flatroute_plan_runs_the_planner_with_the_collector_paused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import gc

    from cli import fabric as cli_core

    seen: list[bool] = []
    real = cli_core.plan

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_core, "plan", spy)
    was = gc.isenabled()
    try:
        gc.enable()
        args = argparse.Namespace(fabric=str(EXAMPLES / "two-site.yaml"), ledger=None,
                                  update_ledger=False, format="json")
        assert cli_core.cmd_plan(args) == 0
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert seen == [False]
    assert json.loads(capsys.readouterr().out)["fabric"]


def two_rack_doc() -> dict[str, Any]:
    tor = {"name": "t1", "asn": 65001, "routerId": "10.0.0.1",
           "peering": {"ipv4": "10.1.0.1/24", "ipv6": "fd00:1::1/64"}}
    tor2 = {"name": "t2", "asn": 65002, "routerId": "10.0.0.2",
            "peering": {"ipv4": "10.2.0.1/24", "ipv6": "fd00:2::1/64"}}
    return {
        "apiVersion": "flatroute.dev/v1", "kind": "Fabric", "metadata": {"name": "t"},
        "spec": {
            "asn": {"scheme": "per-node", "range": {"start": 65500, "end": 65534}},
            "pods": {"ipv4BlockSize": 28, "ipv6BlockSize": 124},
            "sites": [{"name": "s", "pools": {"ipv4": ["10.50.0.0/24"],
                                              "ipv6": ["fd00:50::/116"]},
                       "spines": [{"name": "sp", "asn": 65100, "routerId": "10.0.0.9"}],
                       "racks": [{"name": "r1", "tors": [tor]}, {"name": "r2", "tors": [tor2]}]}],
            "nodes": [{"name": f"n{i}", "rack": f"r{1 + i % 2}"} for i in range(6)],
        },
    }


def test_replan_rebuilds_exactly_the_nodes_whose_rack_or_settings_changed() -> None:
    doc = two_rack_doc()
    first = plan(parse_fabric(yaml.safe_dump(doc)))
    # the same fabric parsed again: equal racks, every node plan reused
    again = plan(parse_fabric(yaml.safe_dump(doc)), first.ledger, previous=first)
    assert all(again.node(n.name) is n for n in first.nodes)
    # a rack's ToR changes: that rack's nodes are planned again, the others' plans reused
    changed = copy.deepcopy(doc)
    changed["spec"]["sites"][0]["racks"][1]["tors"][0]["asn"] = 65009
    third = plan(parse_fabric(yaml.safe_dump(changed)), again.ledger, previous=again)
    for n in first.nodes:
        assert (third.node(n.name) is n) == (n.rack == "r1")
        assert third.node(n.name) == n if n.rack == "r1" else (
            {p.asn for p in third.node(n.name).peers} == {65009})
    assert third.ledger == first.ledger
    # a fabric-wide setting changes: every node is planned again
    v4v6 = copy.deepcopy(changed)
    v4v6["spec"]["bgp"] = {"ipv4OverIpv6": True}
    fourth = plan(parse_fabric(yaml.safe_dump(v4v6)), third.ledger, previous=third)
    assert not any(fourth.node(n.name) is n for n in third.nodes)
    assert all(len(n.peers) == 1 for n in fourth.nodes)
    assert fourth.ledger == first.ledger


NAMES = st.lists(st.sampled_from([f"node{i:02d}" for i in range(20)]), min_size=1,
                 max_size=12, unique=True)


@settings(max_examples=60, deadline=None)
@given(first=NAMES, second=NAMES)
def test_blocks_never_overlap_stay_in_pools_and_are_stable(first: list[str],
                                                           second: list[str]) -> None:
    p1 = plan(small_fabric(first))
    p2 = plan(small_fabric(second), p1.ledger, now="2026-01-01T00:00:00+00:00")
    for p in (p1, p2):
        seen = []
        for n in p.nodes:
            for b in (*n.ipv4_blocks, *n.ipv6_blocks):
                pool = "10.50.0.0/24" if b.version == 4 else "fd00:50::/116"
                import ipaddress

                assert b.subnet_of(ipaddress.ip_network(pool))  # type: ignore[arg-type]
                assert all(not b.overlaps(o) for o in seen)  # type: ignore[arg-type]
                seen.append(b)
        addrs = [str(u.ipv4) for n in p.nodes for u in n.uplinks]
        assert len(addrs) == len(set(addrs))
        asns = [n.asn for n in p.nodes if n.asn is not None]
        assert len(asns) == len(set(asns))
    # a node present in both keeps everything it had
    b1, b2 = blocks_of(p1), blocks_of(p2)
    for name in set(first) & set(second):
        assert b1[name] == b2[name]
        assert p1.node(name).asn == p2.node(name).asn
        assert p1.node(name).uplinks == p2.node(name).uplinks


@settings(max_examples=40, deadline=None)
@given(names=NAMES, retire=st.booleans())
def test_ledger_round_trips(names: list[str], retire: bool) -> None:
    p = plan(small_fabric(names))
    ledger = p.ledger
    if retire:
        ledger = plan(small_fabric(names[:1]), ledger, now="2026-02-02T00:00:00+00:00").ledger
    text = ledger_to_json(ledger)
    back = ledger_from_doc(json.loads(text))
    assert back == ledger
    assert ledger_to_doc(back) == json.loads(text)


def test_empty_ledger_and_bad_ledger() -> None:
    import pytest

    from flatroute.errors import InvalidInput

    assert ledger_from_doc({"version": 1}) == Ledger()
    with pytest.raises(InvalidInput, match="malformed ledger"):
        ledger_from_doc({"version": 1, "nodes": {"x": {"uplinks": [{"ipv4": 1}]}}})
    with pytest.raises(InvalidInput, match="unsupported ledger version"):
        ledger_from_doc({"version": 7})


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.integers(0, 2**128 - 1), st.integers(0, 2**48),
                       st.integers(0, 2**32 - 1).map(lambda v: (0xFFFF << 32) | v),
                       st.integers(0, 0xFFFF).flatmap(
                           lambda h: st.sampled_from([h << s for s in range(0, 128, 16)]))))
def test_fast_ipv6_text_is_pythons(value: int) -> None:
    import ipaddress

    from flatroute.plan.alloc import v6_text

    assert v6_text(value) == str(ipaddress.IPv6Address(value))


def test_ledger_text_has_one_line_per_node_so_a_diff_names_the_node() -> None:
    names = ["a1", "a2", "a3"]
    before = ledger_to_json(plan(small_fabric(names)).ledger)
    after = ledger_to_json(plan(small_fabric([*names, "a4"]),
                                ledger_from_doc(json.loads(before))).ledger)
    old, new = ({line.rstrip(",") for line in text.splitlines()} for text in (before, after))
    assert old - new == set()
    added = new - old
    assert len(added) == 1 and added.pop().lstrip().startswith('"a4": {')
    assert json.loads(after)["nodes"].keys() == {*names, "a4"}
