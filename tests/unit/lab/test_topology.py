"""The lab's topology is derived purely from the fabric and its plan."""

from __future__ import annotations

from flatroute.fabric import load_fabric
from flatroute.fabric.wiring import Role
from flatroute.plan import plan
from lab.topology import build
from tests.conftest import EXAMPLES


def test_two_site_topology() -> None:
    f = load_fabric(EXAMPLES / "two-site.yaml")
    topo = build(f, plan(f), "fx", 2)
    roles = {r.name: r.role for r in topo.routers}
    assert roles["wan1"] is Role.WAN
    assert roles["tk-r1-a"] is Role.TOR
    # no spines: every ToR links to the WAN router
    assert {lk.a for lk in topo.links if lk.b == "wan1"} == {"tk-r1-a", "tk-r1-b", "os-r1-a",
                                                              "os-r1-b"}
    # dual-homed nodes: one link per ToR, enslaved to the ToR's server SVI
    node_links = [lk for lk in topo.links if lk.a == "tk-n1"]
    assert {lk.b for lk in node_links} == {"tk-r1-a", "tk-r1-b"}
    assert all(lk.bridge_b == "servers" and lk.a_if == lk.b for lk in node_links)
    assert ("fx-tk-r1-a", "servers") in topo.bridges
    cidrs = {(a.ns, a.ifname, a.cidr) for a in topo.addresses}
    assert ("fx-tk-n1", "tk-r1-a", "10.1.1.11/24") in cidrs
    assert ("fx-tk-r1-a", "servers", "fd00:1:1::1/64") in cidrs
    assert len(topo.pods) == 8
    assert topo.ns_of("tk-n1-p1") == "fx-tk-n1-p1"
    assert len(set(topo.namespaces())) == len(topo.namespaces()) == 5 + 4 + 8
    assert all(len(lk.a_if) <= 15 and len(lk.b_if) <= 15 for lk in topo.links)


def test_leaf_spine_topology_links_tors_to_spines() -> None:
    f = load_fabric(EXAMPLES / "leaf-spine.yaml")
    topo = build(f, plan(f), "fx", 0)
    spine_links = {(lk.a, lk.b) for lk in topo.links if lk.b.startswith("spine")}
    assert len(spine_links) == 4 * 2
    assert topo.link("r1-leaf1~spine2") is not None
    assert topo.link("spine2~r1-leaf1") is not None
    assert not topo.pods


def test_ports_are_honoured_and_non_linux_names_refused() -> None:
    import pytest
    import yaml

    from flatroute.fabric import parse_fabric
    from lab.topology import LabTopologyError

    doc = yaml.safe_load((EXAMPLES / "two-site.yaml").read_text())
    tor = doc["spec"]["sites"][0]["racks"][0]["tors"][0]
    tor["ports"] = {"wan1": "swp49", "servers": "vlan100"}
    f = parse_fabric(yaml.safe_dump(doc))
    topo = build(f, plan(f), "fx", 0)
    link = topo.link("tk-r1-a~wan1")
    assert link is not None
    assert link.a_if == "swp49"
    assert ("fx-tk-r1-a", "vlan100") in topo.bridges
    tor["ports"] = {"wan1": "Ethernet1/49"}
    f = parse_fabric(yaml.safe_dump(doc))
    with pytest.raises(LabTopologyError, match="Ethernet1/49"):
        build(f, plan(f), "fx", 0)
