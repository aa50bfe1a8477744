"""One bad fabric per kind of validation error; each asserts the field path and the value."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from flatroute.errors import InvalidInput
from flatroute.fabric import parse_fabric
from flatroute.fabric.model import AsnMode, EncapMode, Platform
from tests.conftest import EXAMPLES

BASE: dict[str, Any] = yaml.safe_load((EXAMPLES / "two-site.yaml").read_text())


def errors_of(mutate: Callable[[dict[str, Any]], None]) -> list[str]:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    with pytest.raises(InvalidInput) as exc:
        parse_fabric(yaml.safe_dump(doc), "bad.yaml")
    return [str(e) for e in exc.value.errors]


def test_examples_are_valid() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        fabric = parse_fabric(path.read_text(), str(path))
        assert fabric.nodes, path


def test_two_site_values() -> None:
    f = parse_fabric((EXAMPLES / "two-site.yaml").read_text())
    assert f.asn.mode is AsnMode.PER_NODE
    assert f.srv6.encap_mode is EncapMode.ENCAP
    assert [s.name for s in f.sites] == ["tokyo", "osaka"]
    assert f.routers()["tk-r1-a"].platform is Platform.FRR
    assert f.wan_routers[0].locator is not None


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        obj: Any = doc
        keys = path.split(".")
        for key in keys[:-1]:
            obj = obj[int(key)] if key.isdigit() else obj[key]
        last = keys[-1]
        if last.isdigit():
            obj[int(last)] = value
        else:
            obj[last] = value

    return mutate


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("unknown key", _set("spec.sites.0.racks.0.tors.0.colour", "red"),
     "spec.sites[0].racks[0].tors[0].colour", "unknown key"),
    ("wrong type", _set("spec.sites.1.racks.0.tors.1.asn", "sixty-five"),
     "spec.sites[1].racks[0].tors[1].asn", "'sixty-five'"),
    ("asn out of range", _set("spec.sites.0.racks.0.tors.0.asn", 0),
     "spec.sites[0].racks[0].tors[0].asn", "between"),
    ("bad address", _set("spec.sites.0.racks.0.tors.0.routerId", "10.0.0.300"),
     "spec.sites[0].racks[0].tors[0].routerId", "'10.0.0.300'"),
    ("host bits in pool", _set("spec.sites.0.pools.ipv4", ["10.244.0.1/16"]),
     "spec.sites[0].pools.ipv4[0]", "host bits"),
    ("duplicate name", _set("spec.nodes.1.name", "tk-n1"),
     "spec.nodes[1].name", "duplicate name"),
    ("duplicate router asn", _set("spec.sites.1.racks.0.tors.0.asn", 65101),
     "spec.sites[1].racks[0].tors[0].asn", "duplicate ASN"),
    ("duplicate router id", _set("spec.sites.1.racks.0.tors.1.routerId", "10.255.1.1"),
     "spec.sites[1].racks[0].tors[1].routerId", "duplicate address"),
    ("duplicate uplink address", _set("spec.nodes.1.uplinks.tk-r1-a.ipv4", "10.1.1.11"),
     "spec.nodes[1].uplinks.tk-r1-a.ipv4", "duplicate address"),
    ("overlapping pools", _set("spec.sites.1.pools.ipv4", ["10.244.128.0/17"]),
     "spec.sites[1].pools.ipv4[0]", "overlaps 10.244.0.0/16"),
    ("overlapping locators", _set("spec.sites.1.locatorBlock", "fcbb:bb00:1::/48"),
     "locatorBlock", "overlaps"),
    ("block does not fit pool", _set("spec.pods.ipv4BlockSize", 12),
     "spec.sites[0].pools.ipv4[0]", "smaller than one pod block"),
    ("rack without tors", _set("spec.sites.0.racks.0.tors", []),
     "spec.sites[0].racks[0].tors", "one or two ToRs"),
    ("node in unknown rack", _set("spec.nodes.2.rack", "nowhere"),
     "spec.nodes[2].rack", "'nowhere'"),
    ("uplink to a foreign tor", _set("spec.nodes.0.uplinks",
                                     {"os-r1-a": {"ipv4": "10.2.1.99"}}),
     "spec.nodes[0].uplinks.os-r1-a", "not a ToR of rack tk-r1"),
    ("uplink with another prefix length", _set("spec.nodes.0.uplinks.tk-r1-a.ipv4",
                                                "10.1.1.11/16"),
     "spec.nodes[0].uplinks.tk-r1-a.ipv4", "write 10.1.1.11 or 10.1.1.11/24"),
    ("uplink that is a network", _set("spec.nodes.0.uplinks.tk-r1-a.ipv6", "fd00:1:1::/64"),
     "spec.nodes[0].uplinks.tk-r1-a.ipv6", "the ToR's own or the subnet's network address"),
    ("uplink not an address", _set("spec.nodes.0.uplinks.tk-r1-a.ipv4", "10.1.1.300"),
     "spec.nodes[0].uplinks.tk-r1-a.ipv4", "(10.0.1.11, or 10.0.1.11/24 with the ToR"),
    ("uplink outside subnet", _set("spec.nodes.0.uplinks.tk-r1-a.ipv4", "10.9.9.9"),
     "spec.nodes[0].uplinks.tk-r1-a.ipv4", "not inside the ToR's peering subnet"),
    ("pinned block outside pool", _set("spec.nodes.0.podBlocks", {"ipv4": ["10.245.0.0/26"]}),
     "spec.nodes[0].podBlocks.ipv4[0]", "not inside a ipv4 pool of site tokyo"),
    ("pinned block wrong size", _set("spec.nodes.0.podBlocks", {"ipv4": ["10.244.0.0/24"]}),
     "spec.nodes[0].podBlocks.ipv4[0]", "must be a /26"),
    ("bad encap mode", _set("spec.srv6.encapMode", "inline"),
     "spec.srv6.encapMode", "encap, encap.red"),
    ("unknown waypoint", _set("spec.srv6.policies.0.waypoints", ["ghost"]),
     "spec.srv6.policies[0].waypoints[0]", "'ghost'"),
    ("inline md5 secret", _set("spec.bgp.md5", {"password": "hunter2"}),
     "spec.bgp.md5", "never be inline"),
    ("keepalive too long", _set("spec.bgp.keepalive", 5),
     "spec.bgp.keepalive", "a third of holdTime"),
    ("wrong api version", _set("apiVersion", "flatroute.dev/v0"),
     "apiVersion", "flatroute.dev/v1"),
    ("bad platform", _set("spec.sites.0.racks.0.tors.0.platform", "ios"),
     "spec.sites[0].racks[0].tors[0].platform", "'ios'"),
    ("srv6 site without locator", _set("spec.sites.0.locatorBlock", None),
     "spec.sites[0].locatorBlock", "required when SRv6"),
    ("two racks without spines", _set("spec.sites.0.racks", [
        {"name": "tk-r1", "tors": [{"name": "tk-r1-a", "asn": 65101, "routerId": "10.255.1.1",
                                    "peering": {"ipv4": "10.1.1.1/24"}}]},
        {"name": "tk-r2", "tors": [{"name": "tk-r2-a", "asn": 65103, "routerId": "10.255.1.3",
                                    "peering": {"ipv4": "10.1.3.1/24"}}]}]),
     "spec.sites[0].spines", "needs spines"),
    ("overlapping router locator", _set("spec.wan.routers.0.locator", "fcbb:bb00:1:5::/64"),
     "locator", "overlaps"),
    ("pod mtu leaves no room for srv6", _set("spec.pods.mtu", 1500),
     "spec.pods.mtu", "1500 + 80 bytes of SRv6 encapsulation (encap, up to 2 segments) "
     "exceeds spec.srv6.underlayMtu 1500: cross-site packets that size would be dropped "
     "silently; use at most 1420"),
    ("router asn inside node range", _set("spec.wan.routers.0.asn", 4200000005),
     "spec.wan.routers[0].asn", "inside the node/rack ASN range"),
]


@pytest.mark.parametrize(("mutate", "path", "needle"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_error_names_file_path_and_value(
    mutate: Callable[[dict[str, Any]], None], path: str, needle: str
) -> None:
    errs = errors_of(mutate)
    matching = [e for e in errs if path in e and needle in e]
    assert matching, f"no error with {path!r} and {needle!r} in {errs}"
    assert all(e.startswith("bad.yaml: ") for e in errs)


def test_all_errors_reported_at_once() -> None:
    def many(doc: dict[str, Any]) -> None:
        doc["spec"]["nodes"][0]["rack"] = "nowhere"
        doc["spec"]["sites"][0]["racks"][0]["tors"][0]["asn"] = "x"
        doc["spec"]["bogus"] = 1

    errs = errors_of(many)
    assert len(errs) >= 3
    joined = "\n".join(errs)
    assert "spec.nodes[0].rack" in joined
    assert "spec.sites[0].racks[0].tors[0].asn" in joined
    assert "spec.bogus" in joined


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_fabric("spec: [unclosed\n", "broken.yaml")
    assert "broken.yaml: line" in str(exc.value)


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_fabric("- just\n- a list\n", "list.yaml")
    assert "must be a mapping" in str(exc.value)


def test_three_tors_rejected() -> None:
    def three(doc: dict[str, Any]) -> None:
        tors = doc["spec"]["sites"][0]["racks"][0]["tors"]
        extra = copy.deepcopy(tors[0])
        extra.update(name="tk-r1-c", asn=65103, routerId="10.255.1.3",
                     peering={"ipv4": "10.1.3.1/24"})
        tors.append(extra)

    errs = errors_of(three)
    assert any("spec.sites[0].racks[0].tors" in e and "at most two" in e for e in errs)


def test_every_overlapping_pair_is_reported_not_only_neighbours() -> None:
    # osaka's one pool holds two of tokyo's: sorted, the second is not next to osaka's pool
    def mutate(doc: dict[str, Any]) -> None:
        doc["spec"]["sites"][0]["pools"]["ipv4"] = ["10.250.0.0/24", "10.250.1.0/24"]
        doc["spec"]["sites"][1]["pools"]["ipv4"] = ["10.250.0.0/16"]

    errs = [e for e in errors_of(mutate) if "overlaps" in e]
    assert len(errs) == 2, errs  # and the two disjoint /24s are not said to overlap
    assert all("overlaps 10.250.0.0/16 at spec.sites[1].pools.ipv4[0]" in e for e in errs)
    assert any("spec.sites[0].pools.ipv4[0]" in e for e in errs)
    assert any("spec.sites[0].pools.ipv4[1]" in e for e in errs)


def test_srv6_overhead_and_a_bigger_underlay_mtu() -> None:
    from flatroute.fabric.checks import encap_overhead

    assert [encap_overhead(EncapMode.ENCAP, n) for n in (1, 2, 3)] == [64, 80, 96]
    assert [encap_overhead(EncapMode.ENCAP_RED, n) for n in (1, 2, 3)] == [40, 64, 80]
    doc = copy.deepcopy(BASE)
    doc["spec"]["pods"]["mtu"] = 1500
    doc["spec"]["srv6"]["underlayMtu"] = 9000  # jumbo frames on the underlay
    f = parse_fabric(yaml.safe_dump(doc))
    assert (f.pods.mtu, f.srv6.underlay_mtu) == (1500, 9000)
    doc["spec"]["srv6"] = {**doc["spec"]["srv6"], "underlayMtu": 1500,
                           "encapMode": "encap.red", "policies": []}
    doc["spec"]["pods"]["mtu"] = 1460  # one segment, no SRH with encap.red: 40 bytes
    assert parse_fabric(yaml.safe_dump(doc)).pods.mtu == 1460
    doc["spec"]["pods"]["mtu"] = 1461
    with pytest.raises(InvalidInput, match="use at most 1460"):
        parse_fabric(yaml.safe_dump(doc))


def test_a_pinned_uplink_address_is_bare_or_has_the_subnets_length() -> None:
    """Both forms mean the same (node states carry 10.1.1.11/24; the fabric often the bare
    address): the same fabric, the same plan."""
    from flatroute.plan import plan

    with_len = copy.deepcopy(BASE)
    with_len["spec"]["nodes"][0]["uplinks"]["tk-r1-a"] = {"ipv4": "10.1.1.11/24",
                                                        "ipv6": "fd00:1:1::11/64"}
    a = parse_fabric(yaml.safe_dump(BASE), "bare.yaml")
    b = parse_fabric(yaml.safe_dump(with_len), "with-length.yaml")
    assert a.nodes[0].uplinks == b.nodes[0].uplinks
    assert b.nodes[0].uplinks[0].ipv4_len == 24 and a.nodes[0].uplinks[0].ipv4_len is None
    assert plan(a).node("tk-n1") == plan(b).node("tk-n1")
