"""Pure SRv6 planning: SIDs, locators, cross-site encap routes, policies, churn (no root)."""

from __future__ import annotations

from ipaddress import IPv6Address, ip_network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatroute.errors import InvalidInput
from flatroute.fabric.model import NodeRole
from flatroute.nodestate import from_plan
from flatroute.plan import Plan, plan
from flatroute.plan.model import FUNCTION, Behavior, Ledger
from tests.unit.controller.fabrics import fabric_doc, to_fabric

T = "2026-01-01T00:00:00+00:00"

layouts = st.dictionaries(st.integers(0, 3), st.integers(1, 4), min_size=1).map(
    lambda d: {i: [f"s{i}-n{j}" for j in range(d.get(i, 1))] for i in range(max(d) + 1)})


def _plan(nodes: dict[int, list[str]], scope: str = "node", **kw: Any) -> Plan:
    return plan(to_fabric(fabric_doc(len(nodes), nodes, scope=scope, gateways=True, **kw)),
                now=T)


def _remote_blocks(p: Plan, site: str) -> set[str]:
    return {str(b) for n in p.nodes if n.site != site
            for b in (*n.ipv4_blocks, *n.ipv6_blocks)}


@settings(max_examples=40, deadline=None)
@given(nodes=layouts, scope=st.sampled_from(["node", "site"]))
def test_sids_unique_and_locators_inside_their_site_block(
        nodes: dict[int, list[str]], scope: str) -> None:
    p = _plan(nodes, scope)
    blocks = {s.name: s.locator_block for s in p.sites}
    all_sids = [s.sid for n in p.nodes for s in n.sids]
    assert len(all_sids) == len(set(all_sids))
    locators = [n.locator for n in p.nodes]
    assert len(locators) == len(set(locators))
    for n in p.nodes:
        assert n.locator is not None
        block = blocks[n.site]
        assert block is not None
        assert n.locator.subnet_of(block)
        # Locator 0 of each site block is kept for site-level use.
        assert n.locator.network_address != block.network_address
        for s in n.sids:
            assert s.sid in n.locator
            assert int(s.sid) - int(n.locator.network_address) == FUNCTION[s.behavior]
        assert n.sid(Behavior.END) is not None  # every node can source and be a waypoint
        assert n.locator in n.announcements  # announced over BGP, reachable across the WAN


@settings(max_examples=40, deadline=None)
@given(nodes=layouts)
def test_node_scope_routes_cover_every_remote_block_and_nothing_local(
        nodes: dict[int, list[str]]) -> None:
    p = _plan(nodes, "node")
    by_name = {n.name: n for n in p.nodes}
    for site in p.sites:
        prefixes = [str(s.prefix) for s in site.segments]
        assert len(prefixes) == len(set(prefixes))
        assert set(prefixes) == _remote_blocks(p, site.name)
        for seg in site.segments:
            target = by_name[seg.target]
            assert target.site != site.name
            want = Behavior.END_DX4 if seg.prefix.version == 4 else Behavior.END_DT6
            assert seg.segments == (target.sid(want),)
            assert any(seg.prefix == b for b in (*target.ipv4_blocks, *target.ipv6_blocks))


@settings(max_examples=40, deadline=None)
@given(nodes=layouts)
def test_site_scope_routes_send_remote_aggregates_to_the_gateway(
        nodes: dict[int, list[str]]) -> None:
    p = _plan(nodes, "site")
    by_name = {n.name: n for n in p.nodes}
    for n in p.nodes:
        behaviors = {s.behavior for s in n.sids}
        if n.role is NodeRole.GATEWAY:
            assert {Behavior.END, Behavior.END_DX4, Behavior.END_DT6} <= behaviors
        else:
            assert behaviors == {Behavior.END}  # workers do not decapsulate
    for site in p.sites:
        remote = [s for s in p.sites if s.name != site.name]
        want = {str(a) for s in remote for a in s.aggregates}
        assert {str(s.prefix) for s in site.segments} == want
        for seg in site.segments:
            gw = by_name[seg.target]
            assert gw.role is NodeRole.GATEWAY
            assert gw.site != site.name
            assert seg.segments[-1] in {s.sid for s in gw.sids}


def test_every_node_state_carries_its_sites_encap_routes() -> None:
    p = _plan({0: ["a", "b"], 1: ["c"]}, "node", encap_mode="encap.red")
    for n in p.nodes:
        state = from_plan(p, n)
        assert state.encap_mode == "encap.red"
        assert {str(r.prefix) for r in state.encap_routes} == _remote_blocks(p, n.site)
        assert state.locator == n.locator
        assert state.source_address == n.sid(Behavior.END)


def test_decap_behaviours_follow_the_fabric() -> None:
    doc = fabric_doc(2)
    doc["spec"]["srv6"].update(decapIpv4="End.DT46", decapIpv6="End.DT46")
    p = plan(to_fabric(doc), now=T)
    n = p.nodes[0]
    assert [s.behavior for s in n.sids] == [Behavior.END, Behavior.END_DT46]
    seg = p.site("s0").segments
    assert {s.segments[0] for s in seg} <= {x.sid for m in p.nodes for x in m.sids}
    doc["spec"]["srv6"].update(decapIpv4="End.DX4", decapIpv6="End.DX6")
    p = plan(to_fabric(doc), now=T)
    assert {s.behavior for s in p.nodes[0].sids} == {Behavior.END, Behavior.END_DX4,
                                                     Behavior.END_DX6}


# -- policies -----------------------------------------------------------------------------------
WAN_END = IPv6Address(int(ip_network("fcbb:bb00:ff::/48").network_address) + 1)


def test_site_policy_prepends_the_waypoint_sid_only_where_it_applies() -> None:
    pol = [{"name": "via-wan", "from": {"site": "s0"}, "to": {"site": "s1"},
            "waypoints": ["wan1"]}]
    p = _plan({0: ["a"], 1: ["b"], 2: ["c"]}, "node", policies=pol)
    b = p.node("b")
    for seg in p.site("s0").segments:
        if seg.target == "b":
            assert seg.policy == "via-wan"
            assert seg.segments[0] == WAN_END
            assert seg.segments[-1] in {b.sid(Behavior.END_DX4), b.sid(Behavior.END_DT6)}
        else:
            assert seg.policy is None
            assert len(seg.segments) == 1
    for other in ("s1", "s2"):  # `from: s0` only
        assert all(s.policy is None for s in p.site(other).segments)


def test_node_waypoint_resolves_to_its_end_sid_in_order() -> None:
    pol = [{"name": "two-hops", "to": {"site": "s1"}, "waypoints": ["wan1", "c"]}]
    p = _plan({0: ["a"], 1: ["b"], 2: ["c"]}, "node", policies=pol)
    c_end = p.node("c").sid(Behavior.END)
    segs = [s for s in p.site("s0").segments if s.policy == "two-hops"]
    assert segs
    assert all(s.segments[:2] == (WAN_END, c_end) for s in segs)


def test_prefix_policy_adds_a_steered_route_to_the_owner() -> None:
    pol = [{"name": "one-block", "from": {"site": "s0"}, "to": {"prefix": "10.1.0.0/26"},
            "waypoints": ["wan1"]}]
    p = _plan({0: ["a"], 1: ["b"]}, "node", policies=pol)
    steered = [s for s in p.site("s0").segments if s.policy == "one-block"]
    assert len(steered) == 1
    assert steered[0].target == "b"
    assert steered[0].segments == (WAN_END, p.node("b").sid(Behavior.END_DX4))


def test_waypoint_without_sid_or_unknown_is_invalid_input() -> None:
    pol = [{"name": "p", "to": {"site": "s1"}, "waypoints": ["wan1"]}]
    with pytest.raises(InvalidInput, match=r"policies\[0\]\.waypoints\[0\].*no locator"):
        _plan({0: ["a"], 1: ["b"]}, "node", policies=pol, wan_locator=False)
    pol = [{"name": "p", "to": {"site": "s1"}, "waypoints": ["nobody"]}]
    with pytest.raises(InvalidInput, match=r"waypoints\[0\]"):
        _plan({0: ["a"], 1: ["b"]}, "node", policies=pol)


# -- churn --------------------------------------------------------------------------------------
churn = st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(0, 5)),
                 min_size=1, max_size=12)


@settings(max_examples=30, deadline=None)
@given(steps=churn, scope=st.sampled_from(["node", "site"]))
def test_stable_under_node_churn(steps: list[tuple[bool, int, int]], scope: str) -> None:
    present: dict[int, set[str]] = {0: {"s0-g"}, 1: {"s1-g"}, 2: {"s2-g"}}
    ledger, previous = Ledger(), None
    seen: dict[str, tuple[object, ...]] = {}
    for add, site, idx in steps:
        name = f"s{site}-w{idx}"
        (present[site].add if add else present[site].discard)(name)
        layout = {i: sorted(present[i], key=lambda x: (not x.endswith("-g"), x))
                  for i in range(3)}
        fabric = to_fabric(fabric_doc(3, layout, scope=scope, gateways=True))
        p = plan(fabric, ledger, previous=previous, now=T)
        assert not p.problems
        fresh = plan(fabric, ledger, now=T)  # a restarted controller: same plan
        assert fresh.nodes == p.nodes
        assert fresh.sites == p.sites
        for n in p.nodes:
            alloc = (n.ipv4_blocks, n.ipv6_blocks, n.locator, n.sids, n.asn)
            # A node keeps its blocks, locator and SIDs for life (also after leaving and
            # coming back within the grace period: the ledger keeps them retired).
            assert seen.setdefault(n.name, alloc) == alloc
        sids = [s.sid for n in p.nodes for s in n.sids]
        assert len(sids) == len(set(sids))
        for s in p.sites:  # nobody routes to a node that left
            assert {seg.target for seg in s.segments} <= {n.name for n in p.nodes}
        ledger, previous = p.ledger, p
