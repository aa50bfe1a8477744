"""Nodes + FabricConfig + RackPeerings -> Fabric: same result as the fabric file, errors
addressed to the object and field they came from, per-node problems leave the node out."""

from __future__ import annotations

import copy

import pytest
import yaml

from flatroute.errors import InvalidInput
from flatroute.fabric import load_fabric
from flatroute.nodestate import from_plan, from_spec, spec_doc
from flatroute.plan import Ledger, plan
from kube.fabric import assemble
from kube.objects import strip_nulls
from kube.seed import objects_from_fabric
from tests.kube_util import EXAMPLES, example_objects, node


@pytest.mark.parametrize("name", ["single-rack", "leaf-spine", "two-site"])
def test_same_fabric_as_the_file(name: str) -> None:
    config, racks, nodes = example_objects(name, fabric=name)
    got = assemble(config, racks, nodes).parse()
    want = load_fabric(EXAMPLES / f"{name}.yaml")
    assert got.nodes == tuple(sorted(want.nodes, key=lambda n: n.name))
    assert (got.asn, got.bgp, got.pods, got.srv6, got.wan_routers) == (
        want.asn, want.bgp, want.pods, want.srv6, want.wan_routers)
    assert [(s.name, s.racks, s.spines) for s in got.sites] == [
        (s.name, s.racks, s.spines) for s in want.sites]


def _errors(config: object, racks: object, nodes: object) -> list[str]:
    with pytest.raises(InvalidInput) as exc:
        assemble(config, racks, nodes).parse()  # type: ignore[arg-type]
    return [str(e) for e in exc.value.errors]


def test_errors_name_the_object_and_field() -> None:
    config, racks, nodes = example_objects("leaf-spine")
    racks[0]["spec"]["tors"][1]["asn"] = "x"
    nodes[0]["metadata"]["annotations"]["flatroute.dev/asn"] = "12"
    config["spec"]["bgp"]["keepalive"] = 5
    errs = _errors(config, racks, nodes)
    assert "RackPeering/r1: spec.tors[1].asn: must be an integer (got 'x')" in errs
    assert any(e.startswith("Node/r1-n1: metadata.annotations[flatroute.dev/asn]: ")
               for e in errs)
    assert any(e.startswith("FabricConfig/default: spec.bgp.keepalive: ") for e in errs)


def test_rack_of_an_unknown_site() -> None:
    config, racks, _ = example_objects("single-rack")
    racks[0]["spec"]["site"] = "mars"
    errs = _errors(config, racks, [])
    assert errs == ["RackPeering/r1: spec.site: no site 'mars' in FabricConfig/default "
                    "(got 'mars')"]


def test_unplaced_nodes_do_not_block_the_fabric() -> None:
    config, racks, nodes = example_objects("two-site")
    extra = [node("nolabel", ""), node("ghost", "no-rack"),
             node("lost", "tk-r1", "osaka")]
    extra[0]["metadata"]["labels"].pop("topology.kubernetes.io/zone")
    a = assemble(config, racks, nodes + extra)
    fabric = a.parse()
    assert {n.name for n in fabric.nodes} == {n["metadata"]["name"] for n in nodes}
    reasons = {u.name: u.reason for u in a.unplaced}
    assert set(reasons) == {"nolabel", "ghost", "lost"}
    assert "tk-r1 is in site tokyo" in reasons["lost"]


def test_configurable_labels_role_and_addresses() -> None:
    config, racks, _ = example_objects("single-rack")
    config["spec"]["nodeDiscovery"] = {"rackLabel": "example.com/rack",
                                       "roleLabel": "example.com/role"}
    n = node("a", "ignored", addresses=["10.0.1.50", "192.0.2.9"])
    n["metadata"]["labels"]["example.com/rack"] = "r1"
    n["metadata"]["annotations"]["example.com/role"] = "gateway"
    fabric = assemble(config, racks, [n]).parse()
    (got,) = fabric.nodes
    assert got.rack == "r1" and got.role.value == "gateway"
    tor = racks[0]["spec"]["tors"][0]
    assert [(u.tor, str(u.ipv4)) for u in got.uplinks] == [(tor["name"], "10.0.1.50")]


def test_digest_ignores_node_status_churn() -> None:
    config, racks, nodes = example_objects("single-rack")
    a = assemble(config, racks, nodes)
    busy = copy.deepcopy(nodes)
    for n in busy:
        n["status"]["conditions"] = [{"type": "Ready", "lastHeartbeatTime": "now"}]
        n["metadata"]["resourceVersion"] = "999"
    assert assemble(config, racks, busy).digest == a.digest


@pytest.mark.parametrize("name", ["single-rack", "leaf-spine", "two-site"])
def test_nodestate_spec_round_trips_without_nulls(name: str) -> None:
    fabric = load_fabric(EXAMPLES / f"{name}.yaml")
    p = plan(fabric, Ledger())
    for n in p.nodes:
        st = from_plan(p, n)
        assert from_spec(strip_nulls(spec_doc(st))) == st


def test_bfd_chosen_per_rack_and_per_tor_comes_through_rack_peerings() -> None:
    doc = yaml.safe_load((EXAMPLES / "leaf-spine.yaml").read_text())
    racks = doc["spec"]["sites"][0]["racks"]
    racks[0]["bfd"] = False
    racks[1]["tors"][1]["bfd"] = False
    config, rack_objs, nodes = objects_from_fabric(doc, "leaf-spine")
    got = assemble(config, rack_objs, nodes).parse()
    assert {t: got.bfd_on(t) for t in ("r1-leaf1", "r2-leaf1", "r2-leaf2")} == {
        "r1-leaf1": False, "r2-leaf1": True, "r2-leaf2": False}
