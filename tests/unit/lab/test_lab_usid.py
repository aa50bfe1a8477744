"""What the lab expects of a uSID fabric's paths, from the plan alone (no root)."""

from __future__ import annotations

from ipaddress import IPv6Address

import yaml

from flatroute.fabric import parse_fabric
from flatroute.plan import Plan, plan
from lab.srv6 import path_lines, router_behaviors, waypoint_arrivals
from tests.conftest import EXAMPLES


def _plan(name: str) -> Plan:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    return plan(parse_fabric(yaml.safe_dump(doc)))


def test_each_waypoint_expects_the_container_shifted_once_more() -> None:
    assert waypoint_arrivals(_plan("two-site-usid.yaml")) == {
        "wan1": {(IPv6Address("fcbb:bb00:1:2:3::"), False)},
        "wan2": {(IPv6Address("fcbb:bb00:2:3::"), False)},
    }
    assert waypoint_arrivals(_plan("two-site.yaml")) == {}  # full SIDs: no uSID path


def test_status_lines_show_usids_containers_and_hops() -> None:
    lines = path_lines(_plan("two-site-usid.yaml"))
    assert lines[:3] == [
        "  from tokyo to 10.245.0.0/26 (osaka-via-wan1-wan2): "
        "fcbb:bb00:0001 > fcbb:bb00:0002 > fcbb:bb00:0003",
        "    containers fcbb:bb00:1:2:3:: (no SRH)",
        "    hops wan1 uN fcbb:bb00:1:2:3::, wan2 uN fcbb:bb00:2:3::, "
        "os-n1 uDT46 fcbb:bb00:3::"]


def test_routers_need_un_in_a_usid_fabric() -> None:
    f = parse_fabric((EXAMPLES / "two-site-usid.yaml").read_text())
    assert router_behaviors(f) == ("uN",)
    assert router_behaviors(parse_fabric((EXAMPLES / "two-site.yaml").read_text())) == ("End",)
