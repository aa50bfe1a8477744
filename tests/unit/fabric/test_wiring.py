"""The wiring of every example fabric: roles, links, interface names, addresses, MTU."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml

from flatroute.fabric import load_fabric, parse_fabric
from flatroute.fabric.wiring import LinkKind, Role, Wiring, wire
from flatroute.plan import plan
from tests.conftest import EXAMPLES

K = LinkKind


def _wiring(name: str) -> Wiring:
    f = load_fabric(EXAMPLES / f"{name}.yaml")
    return wire(f, plan(f))


def _edit(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return doc


def _wire_doc(doc: dict[str, Any]) -> Wiring:
    f = parse_fabric(yaml.safe_dump(doc))
    return wire(f, plan(f))


def _cables(w: Wiring) -> list[tuple[LinkKind, str, str]]:
    return [(lk.kind, lk.a.name, lk.b.name) for lk in w.links]


def test_every_example_is_covered() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} == {
        "leaf-spine", "services", "single-rack", "two-site", "two-site-usid", "unnumbered"}


def test_two_site_usid_joins_each_tor_to_both_wan_routers() -> None:
    w = _wiring("two-site-usid")
    assert _cables(w)[:4] == [(K.TOR_WAN, "tk-r1-a", "wan1"), (K.TOR_WAN, "tk-r1-a", "wan2"),
                              (K.TOR_WAN, "os-r1-a", "wan1"), (K.TOR_WAN, "os-r1-a", "wan2")]



def test_services_one_rack_under_a_spine() -> None:
    w = _wiring("services")
    assert [(r.name, r.role) for r in w.routers] == [("sv-tor", Role.TOR),
                                                     ("sv-spine", Role.SPINE)]
    assert (K.SERVER, "sv-n1", "sv-tor") in _cables(w)


def test_single_rack() -> None:
    w = _wiring("single-rack")
    assert [(r.name, r.role, r.site, r.rack) for r in w.routers] == [
        ("r1-tor", Role.TOR, w.routers[0].site, "r1")]
    assert _cables(w) == [(K.SERVER, n, "r1-tor") for n in ("node1", "node2", "node3")]
    lk = w.links[0]
    assert (lk.a.role, lk.a.ifname, lk.b.role, lk.b.ifname, lk.bridge) == (
        Role.NODE, "r1-tor", Role.TOR, "node1", "servers")
    assert [str(a) for a in lk.a.addresses] == ["10.0.1.2/24", "fd00:0:1::2/64"]
    assert lk.b.addresses == ()  # the ToR's addresses are on its SVI, not on the port
    assert [(s.tor, s.ifname, [str(a) for a in s.addresses]) for s in w.servers] == [
        ("r1-tor", "servers", ["10.0.1.1/24", "fd00:0:1::1/64"])]


def test_two_site_tors_meet_the_wan_without_spines() -> None:
    w = _wiring("two-site")
    assert [(r.name, r.role, r.site, r.rack, r.path) for r in w.routers] == [
        ("tk-r1-a", Role.TOR, "tokyo", "tk-r1", "spec.sites[0].racks[0].tors[0]"),
        ("tk-r1-b", Role.TOR, "tokyo", "tk-r1", "spec.sites[0].racks[0].tors[1]"),
        ("os-r1-a", Role.TOR, "osaka", "os-r1", "spec.sites[1].racks[0].tors[0]"),
        ("os-r1-b", Role.TOR, "osaka", "os-r1", "spec.sites[1].racks[0].tors[1]"),
        ("wan1", Role.WAN, None, None, "spec.wan.routers[0]"),
    ]
    tors = ("tk-r1-a", "tk-r1-b", "os-r1-a", "os-r1-b")
    nodes = [(n.name, n.rack) for n in w.nodes]
    assert nodes == [("os-n1", "os-r1"), ("os-n2", "os-r1"), ("tk-n1", "tk-r1"),
                     ("tk-n2", "tk-r1")]
    assert _cables(w) == [(K.TOR_WAN, t, "wan1") for t in tors] + [
        (K.SERVER, n, f"{rack}-{ab}") for n, rack in nodes for ab in "ab"]
    assert all(lk.a.ifname == lk.b.name and lk.b.ifname == lk.a.name for lk in w.links)
    assert all(lk.a.addresses == () == lk.b.addresses for lk in w.links[:4])
    assert [str(a) for a in w.links[-1].a.addresses] == ["10.1.2.12/24", "fd00:1:2::12/64"]
    assert [s.tor for s in w.servers] == list(tors)
    assert [lk.name for lk in w.router_links("wan1")] == [f"{t}~wan1" for t in tors]
    assert w.router_links("tk-n1") == ()
    assert w.port("tk-r1-a", "tk-n1") == "tk-n1"
    assert w.port("tk-n1", "tk-r1-a") == "tk-r1-a"
    with pytest.raises(KeyError):
        w.port("tk-r1-a", "os-n1")


def test_leaf_spine_every_leaf_meets_every_spine() -> None:
    w = _wiring("leaf-spine")
    leaves = ["r1-leaf1", "r1-leaf2", "r2-leaf1", "r2-leaf2"]
    assert [(r.name, r.role) for r in w.routers] == [
        *((t, Role.TOR) for t in leaves), ("spine1", Role.SPINE), ("spine2", Role.SPINE)]
    assert w.router("spine2").path == "spec.sites[0].spines[1]"
    nodes = [f"r{r}-n{i}" for r in (1, 2) for i in (1, 2, 3, 4)]
    assert _cables(w) == [(K.TOR_SPINE, t, s) for t in leaves for s in ("spine1", "spine2")] + [
        (K.SERVER, n, f"{n[:2]}-leaf{i}") for n in nodes for i in (1, 2)]
    assert [lk.far("spine1").name for lk in w.router_links("spine1")] == leaves
    assert Counter(lk.a.role for lk in w.links) == {Role.TOR: 8, Role.NODE: 16}
    assert len(w.servers) == 4


def test_unnumbered_nodes_have_no_addresses_and_no_svi() -> None:
    w = _wiring("unnumbered")
    assert [(r.name, r.role) for r in w.routers] == [("r1-a", Role.TOR), ("r1-b", Role.TOR)]
    assert _cables(w) == [(K.UNNUMBERED, n, t) for n in ("node1", "node2")
                          for t in ("r1-a", "r1-b")]
    assert all(lk.bridge is None and not lk.a.addresses for lk in w.links)
    assert w.servers == ()


def test_spines_meet_the_wan() -> None:
    doc = _edit("leaf-spine")
    doc["spec"]["wan"] = {"routers": [
        {"name": "wan1", "asn": 65000, "routerId": "10.255.0.1", "platform": "frr"},
        {"name": "wan2", "asn": 65001, "routerId": "10.255.0.2", "platform": "frr"}]}
    w = _wire_doc(doc)
    spine_wan = [(lk.a.name, lk.b.name) for lk in w.links if lk.kind is K.SPINE_WAN]
    assert spine_wan == [(s, x) for s in ("spine1", "spine2") for x in ("wan1", "wan2")]
    assert not any(lk.kind is K.TOR_WAN for lk in w.links)  # spines are the site's border
    assert [r.name for r in w.routers][-2:] == ["wan1", "wan2"]
    assert [lk.far("wan1").role for lk in w.router_links("wan1")] == [Role.SPINE] * 2


def test_ports_name_the_router_ends_and_the_svi() -> None:
    doc = _edit("two-site")
    tor = doc["spec"]["sites"][0]["racks"][0]["tors"][0]
    tor["ports"] = {"wan1": "Ethernet1/49", "servers": "Vlan100", "tk-n1": "Ethernet1/1"}
    doc["spec"]["wan"]["routers"][0]["ports"] = {"tk-r1-a": "swp1"}
    w = _wire_doc(doc)
    up = w.links[0]
    assert (up.a.name, up.a.ifname, up.b.name, up.b.ifname) == (
        "tk-r1-a", "Ethernet1/49", "wan1", "swp1")
    assert w.router("tk-r1-a").servers_ifname == "Vlan100"
    assert w.servers[0].ifname == "Vlan100"
    n1 = next(lk for lk in w.links if lk.name == "tk-n1~tk-r1-a")
    assert (n1.a.ifname, n1.b.ifname, n1.bridge) == ("tk-r1-a", "Ethernet1/1", "Vlan100")


def test_long_names_follow_the_naming_rule() -> None:
    doc = _edit("unnumbered")
    doc["spec"]["nodes"][0]["name"] = "a-very-long-node-name"
    w = _wire_doc(doc)
    lk = w.links_of("a-very-long-node-name")[0]
    assert len(lk.b.ifname) == 15 and lk.b.ifname.startswith("a-very-lon")
    assert w.port("r1-a", "a-very-long-node-name") == lk.b.ifname


def test_every_link_carries_the_underlay_mtu() -> None:
    doc = _edit("two-site")
    doc["spec"]["srv6"]["underlayMtu"] = 9000
    w = _wire_doc(doc)
    assert w.mtu == 9000
    assert {lk.mtu for lk in w.links} == {9000}
    assert {lk.mtu for lk in _wiring("single-rack").links} == {1500}



def test_the_lab_and_the_renderers_share_the_wiring_and_its_role_enum() -> None:
    from lab.topology import build
    from render.vagrant import machines
    from render.view import build_views

    for path in sorted(EXAMPLES.glob("*.yaml")):
        f = load_fabric(path)
        p = plan(f)
        w = wire(f, p)
        roles = {r.name: r.role for r in w.routers} | {n.name: Role.NODE for n in w.nodes}
        topo = build(f, p, "fx", 0)
        assert {r.name: r.role for r in topo.routers} == {
            r.name: r.role for r in w.routers}
        assert [(lk.a, lk.a_if, lk.b, lk.b_if, lk.bridge_b) for lk in topo.links] == [
            (lk.a.name, lk.a.ifname, lk.b.name, lk.b.ifname, lk.bridge) for lk in w.links]
        views = build_views(f, p, None)
        assert [(v.router.name, v.role) for v in views] == [(r.name, r.role) for r in w.routers]
        for v in views:
            assert [(lk.neighbor, lk.role, lk.interface) for lk in v.links] == [
                (lk.far(v.router.name).name, lk.far(v.router.name).role,
                 lk.near(v.router.name).ifname) for lk in w.router_links(v.router.name)]
        vms = machines(f, p)
        assert {vm.name: vm.role for vm in vms} == roles
        assert all(type(r) is Role for r in [*(v.role for v in views), *(m.role for m in vms)])
