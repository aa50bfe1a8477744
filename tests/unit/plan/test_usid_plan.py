"""uSID (F3216) planning, pure: containers, node IDs for life, and paths walked hop by hop."""

from __future__ import annotations

import json
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flatroute.errors import InvalidInput
from flatroute.fabric import parse_fabric
from flatroute.fabric.usid import containers
from flatroute.nodestate import from_json, from_plan, to_json
from flatroute.plan import Plan, plan
from flatroute.plan.ledger import expire, ledger_from_doc, ledger_to_doc
from flatroute.plan.model import Behavior, Ledger
from flatroute.plan.output import plan_to_doc, plan_to_table
from flatroute.plan.usid import LocalUsid, WalkError, block_of, pack, text, usid_of, walk
from tests.conftest import EXAMPLES

T0 = "2026-01-01T00:00:00+00:00"
N = IPv6Network


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "two-site-usid.yaml").read_text())
    return doc


def _plan(doc: dict[str, Any], ledger: Ledger | None = None, now: str = T0) -> Plan:
    return plan(parse_fabric(yaml.safe_dump(doc)), ledger, now=now)


# -- containers --------------------------------------------------------------------------------
def test_six_usids_fill_one_container_the_seventh_opens_another() -> None:
    six = [N(f"fcbb:bb00:{i}::/48") for i in range(1, 7)]
    assert pack(six) == (IPv6Address("fcbb:bb00:1:2:3:4:5:6"),)
    assert pack([*six, N("fcbb:bb00:7::/48")]) == (
        IPv6Address("fcbb:bb00:1:2:3:4:5:6"), IPv6Address("fcbb:bb00:7::"))


def test_a_new_block_opens_a_new_container() -> None:
    assert pack([N("fcbb:bb00:1::/48"), N("fcbb:bb01:2::/48"), N("fcbb:bb01:3::/48")]) == (
        IPv6Address("fcbb:bb00:1::"), IPv6Address("fcbb:bb01:2:3::"))


def test_a_local_function_takes_two_slots() -> None:
    ua = usid_of(N("fcbb:bb00:5::/48"), 0xE001)
    assert (str(ua), text(ua)) == ("fcbb:bb00:5:e001::/64", "fcbb:bb00:0005:e001")
    assert pack([N("fcbb:bb00:1::/48"), ua, N("fcbb:bb00:9::/48")]) == (
        IPv6Address("fcbb:bb00:1:5:e001:9::"),)
    five = [N(f"fcbb:bb00:{i}::/48") for i in range(1, 6)]
    assert len(pack([*five, ua])) == 2  # 5 + 2 slots > 6


def test_walk_shifts_one_usid_per_hop_and_ends_at_the_udt() -> None:
    table = [LocalUsid(N("fcbb:bb00:1::/48"), "w1", Behavior.UN),
             LocalUsid(N("fcbb:bb00:2::/48"), "w2", Behavior.UN),
             LocalUsid(N("fcbb:bb00:3::/48"), "n3", Behavior.UDT46)]
    hops = walk((IPv6Address("fcbb:bb00:1:2:3::"),), table)
    assert [(h.owner, str(h.destination)) for h in hops] == [
        ("w1", "fcbb:bb00:1:2:3::"), ("w2", "fcbb:bb00:2:3::"), ("n3", "fcbb:bb00:3::")]
    # a container that ends at a uN with nothing after it is dropped, as the datapath does
    with pytest.raises(WalkError, match="ends at a uN"):
        walk((IPv6Address("fcbb:bb00:1:2::"),), table)
    # across containers: the end of one gives way to the next segment
    hops = walk((IPv6Address("fcbb:bb00:1::"), IPv6Address("fcbb:bb00:2:3::")), table)
    assert [h.owner for h in hops] == ["w1", "w2", "n3"]


# -- the example -------------------------------------------------------------------------------
def test_two_waypoints_and_the_egress_fit_one_container() -> None:
    p = _plan(_doc())
    assert [(r.name, str(r.locator)) for r in p.routers] == [
        ("wan1", "fcbb:bb00:1::/48"), ("wan2", "fcbb:bb00:2::/48")]
    os_n1 = p.node("os-n1")
    assert [(str(s.sid), s.behavior, s.length) for s in os_n1.sids] == [
        ("fcbb:bb00:3::", Behavior.UDT46, 48)]
    seg = next(g for g in p.site("tokyo").segments if g.prefix.version == 4)
    assert [str(x) for x in seg.segments] == ["fcbb:bb00:1:2:3::"]
    assert [text(u) for u in seg.usids] == ["fcbb:bb00:0001", "fcbb:bb00:0002",
                                            "fcbb:bb00:0003"]
    assert str(p.site("tokyo").locator_block) == "fcbb:bb00::/32"
    table = plan_to_table(p)
    assert "fcbb:bb00:0001 > fcbb:bb00:0002 > fcbb:bb00:0003 = [fcbb:bb00:1:2:3::]" in table
    assert "uN=fcbb:bb00:0001 (fcbb:bb00:1::/48)" in table
    doc = plan_to_doc(p)
    assert doc["format"] == "usid-f3216"
    assert doc["sites"][0]["segments"][0]["usids"][0] == "fcbb:bb00:0001"


def test_node_state_carries_the_compressed_form_and_round_trips() -> None:
    p = _plan(_doc())
    st_ = from_plan(p, p.node("tk-n1"))
    doc = json.loads(to_json(st_))
    route = doc["spec"]["srv6"]["routes"][0]
    assert route["segments"] == ["fcbb:bb00:1:2:3::"]
    assert route["usids"] == ["fcbb:bb00:1::/48", "fcbb:bb00:2::/48", "fcbb:bb00:3::/48"]
    assert doc["spec"]["srv6"]["localSids"] == [
        {"sid": "fcbb:bb00:4::", "behavior": "uDT46", "length": 48}]
    back = from_json(to_json(st_))
    assert back == st_
    assert back.source_address == IPv6Address("fcbb:bb00:4::")


def test_node_ids_are_for_life_and_return_only_after_the_grace_period() -> None:
    doc = _doc()
    p1 = _plan(doc)
    ids = {n.name: str(n.locator) for n in p1.nodes}
    # os-n1 leaves: its ID stays taken, a new node takes the next one
    doc["spec"]["nodes"] = [{"name": "tk-n1", "rack": "tk-r1"},
                            {"name": "os-n9", "rack": "os-r1"}]
    p2 = _plan(doc, ledger_from_doc(ledger_to_doc(p1.ledger)), "2026-01-02T00:00:00+00:00")
    assert str(p2.node("tk-n1").locator) == ids["tk-n1"]
    assert str(p2.node("os-n9").locator) == "fcbb:bb00:5::/48"
    assert p2.ledger.nodes["os-n1"].retired_at is not None
    # a router that stops doing uSID keeps its ID, retired; back, it has the same one
    doc["spec"]["wan"]["routers"][1]["usid"] = False
    doc["spec"]["srv6"]["policies"][0]["waypoints"] = ["wan1"]
    p3 = _plan(doc, p2.ledger, "2026-01-03T00:00:00+00:00")
    assert p3.ledger.routers["wan2"].retired_at == "2026-01-03T00:00:00+00:00"
    assert [r.name for r in p3.routers] == ["wan1"]
    freed = expire(p3.ledger, now=1e12, grace_seconds=3600)
    assert "os-n1" not in freed.nodes and "wan2" not in freed.routers
    kept = expire(p3.ledger, now=0, grace_seconds=3600)
    assert "wan2" in kept.routers
    doc["spec"]["wan"]["routers"][1]["usid"] = True
    p4 = _plan(doc, kept, "2026-01-04T00:00:00+00:00")
    assert str(p4.ledger.routers["wan2"].locator) == "fcbb:bb00:2::/48"
    assert p4.ledger.routers["wan2"].retired_at is None


def test_a_pinned_router_locator_keeps_its_node_id() -> None:
    doc = _doc()
    doc["spec"]["wan"]["routers"][0]["locator"] = "fcbb:bb00:100::/48"
    p = _plan(doc)
    assert [(r.name, str(r.locator)) for r in p.routers] == [
        ("wan1", "fcbb:bb00:100::/48"), ("wan2", "fcbb:bb00:1::/48")]


def test_exhaustion_through_retired_ids_is_a_node_problem() -> None:
    doc = _doc()
    doc["spec"]["srv6"]["nodeIds"] = {"first": 1, "last": 4}
    p1 = _plan(doc)
    doc["spec"]["nodes"][1]["name"] = "os-n2"  # os-n1 retired, holding ID 3
    p2 = _plan(doc, p1.ledger)
    assert [str(x) for x in p2.problems] == [
        "os-n2: node IDs of uSID block fcbb:bb00::/32 are exhausted (spec.srv6.nodeIds): "
        "no uSID assigned"]


# -- properties --------------------------------------------------------------------------------
def _random_fabric(sites: int, per_site: list[int], wans: int, policies: list[list[int]],
                   per_site_blocks: bool) -> dict[str, Any]:
    doc = _doc()
    spec = doc["spec"]
    spec["pods"]["mtu"] = 1280
    spec["srv6"]["underlayMtu"] = 9000
    spec["wan"]["routers"] = [{"name": f"w{i}", "asn": 65000 + i, "routerId": f"10.255.0.{i + 1}",
                               "usid": True} for i in range(wans)]
    spec["sites"], spec["nodes"] = [], []
    for s in range(sites):
        site: dict[str, Any] = {
            "name": f"s{s}", "pools": {"ipv4": [f"10.{s}.0.0/16"], "ipv6": [f"fd00:{s}::/56"]},
            "racks": [{"name": f"s{s}-r", "tors": [{
                "name": f"s{s}-t", "asn": 65100 + s, "routerId": f"10.254.{s}.1",
                "usid": True, "peering": {"ipv4": f"10.{100 + s}.0.1/24"}}]}]}
        if per_site_blocks:
            site["locatorBlock"] = f"fcbb:{s + 1:x}::/32"
        spec["sites"].append(site)
        spec["nodes"] += [{"name": f"s{s}-n{j}", "rack": f"s{s}-r"} for j in range(per_site[s])]
    routers = [f"w{i}" for i in range(wans)] + [f"s{s}-t" for s in range(sites)]
    spec["srv6"]["policies"] = [
        {"name": f"p{k}", "from": {"site": "s0"}, "to": {"site": f"s{1 + k % (sites - 1)}"},
         "waypoints": [routers[i % len(routers)] for i in wps]}
        for k, wps in enumerate(policies) if wps and sites > 1]
    return doc


def _containers(doc: dict[str, Any], pol: dict[str, Any]) -> int:
    fabric = N(doc["spec"]["srv6"]["locatorBlock"])
    site = {s["name"]: N(s.get("locatorBlock", fabric)) for s in doc["spec"]["sites"]}
    blocks: list[N | None] = [site[w[:-2]] if w.endswith("-t") else fabric
                              for w in pol["waypoints"]]
    return containers([*blocks, site[pol["to"]["site"]]])


@settings(max_examples=30, deadline=None)
@given(sites=st.integers(2, 3), per_site=st.lists(st.integers(1, 3), min_size=3, max_size=3),
       wans=st.integers(1, 4), per_site_blocks=st.booleans(),
       policies=st.lists(st.lists(st.integers(0, 9), max_size=7), max_size=1))
def test_every_path_resolves_hop_by_hop_to_its_egress_and_no_usid_collides(
        sites: int, per_site: list[int], wans: int, per_site_blocks: bool,
        policies: list[list[int]]) -> None:
    doc = _random_fabric(sites, per_site, wans, policies, per_site_blocks)
    if any(_containers(doc, pol) > 6 for pol in doc["spec"]["srv6"]["policies"]):
        # only a path too long for the datapaths is refused, at the policy's waypoints
        with pytest.raises(InvalidInput, match=r"policies\[0\]\.waypoints.*uSID containers"):
            _plan(doc)
        return
    p = _plan(doc)
    table = [LocalUsid(N((int(s.sid), s.length)), n.name, s.behavior)
             for n in p.nodes for s in n.sids]
    table += [LocalUsid(N((int(s.sid), s.length)), r.name, s.behavior)
              for r in p.routers for s in r.sids]
    prefixes = [e.prefix for e in table]
    assert len(prefixes) == len(set(prefixes))  # no uSID collides with another
    assert all(not a.overlaps(b) for i, a in enumerate(prefixes) for b in prefixes[i + 1:])
    policy = {pol["name"]: pol["waypoints"] for pol in doc["spec"]["srv6"]["policies"]}
    for site in p.sites:
        for seg in site.segments:
            hops = walk(seg.segments, table)
            assert hops[-1].owner == seg.target
            assert hops[-1].behavior is Behavior.UDT46
            assert [h.owner for h in hops[:-1]] == policy.get(seg.policy or "", [])
            # the containers carry exactly the uSIDs, six to a container at most
            assert pack(seg.usids) == seg.segments
            if len({block_of(u) for u in seg.usids}) == 1:
                assert len(seg.segments) == -(-len(seg.usids) // 6)
