"""spec.srv6.format: usid-f3216: one bad fabric per rule, each with its field path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from flatroute.errors import InvalidInput
from flatroute.fabric import parse_fabric
from flatroute.fabric.model import EncapMode, SidFormat
from tests.conftest import EXAMPLES

BASE: dict[str, Any] = yaml.safe_load((EXAMPLES / "two-site-usid.yaml").read_text())
FULL: dict[str, Any] = yaml.safe_load((EXAMPLES / "two-site.yaml").read_text())


def errors_of(mutate: Callable[[dict[str, Any]], None], base: dict[str, Any] = BASE
              ) -> list[str]:
    doc = copy.deepcopy(base)
    mutate(doc)
    with pytest.raises(InvalidInput) as exc:
        parse_fabric(yaml.safe_dump(doc), "bad.yaml")
    return [str(e) for e in exc.value.errors]


def test_the_example_parses_as_usid_with_encap_red_by_default() -> None:
    doc = copy.deepcopy(BASE)
    del doc["spec"]["srv6"]["encapMode"]
    f = parse_fabric(yaml.safe_dump(doc))
    assert f.srv6.format is SidFormat.USID_F3216 and f.srv6.usid
    assert f.srv6.encap_mode is EncapMode.ENCAP_RED
    assert str(f.srv6.locator_block) == "fcbb:bb00::/32"
    assert f.routers()["wan1"].usid


def test_block_must_be_a_32() -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["srv6"]["locatorBlock"] = "fcbb:bb00::/40"
    errs = errors_of(m)
    assert any("spec.srv6.locatorBlock" in e and "/32" in e for e in errs), errs


def test_site_block_must_be_a_32_too() -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["sites"][1]["locatorBlock"] = "fcbc:0:1::/48"
    errs = errors_of(m)
    assert any("spec.sites[1].locatorBlock" in e and "/32" in e for e in errs), errs


def test_a_site_needs_a_block() -> None:
    def m(d: dict[str, Any]) -> None:
        del d["spec"]["srv6"]["locatorBlock"]
        d["spec"]["sites"][0]["locatorBlock"] = "fcbb:bb01::/32"
    errs = errors_of(m)
    assert any("spec.sites[1].locatorBlock" in e and "is required" in e for e in errs), errs
    # and the WAN routers, which belong to no site, have nowhere to take a node ID from
    assert any("spec.wan.routers[0].usid" in e and "spec.srv6.locatorBlock" in e
               for e in errs), errs


def test_node_ids_exhausted() -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["srv6"]["nodeIds"] = {"first": 1, "last": 3}  # 2 nodes + 2 routers
    errs = errors_of(m)
    assert any("spec.srv6.locatorBlock" in e and "node IDs exhausted" in e
               and "fcbb:bb00::/32" in e for e in errs), errs


def test_node_id_range_is_the_gib() -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["srv6"]["nodeIds"] = {"first": 1, "last": 0xE000}
    errs = errors_of(m)
    assert any("spec.srv6.nodeIds.last" in e for e in errs), errs


def test_waypoint_router_without_usid() -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["wan"]["routers"][1]["usid"] = False
    errs = errors_of(m)
    assert any("spec.srv6.policies[0].waypoints[1]" in e and "cannot do uSID" in e
               and "wan2" in e for e in errs), errs


def test_waypoint_with_a_full_sid_locator_mixes_formats() -> None:
    def m(d: dict[str, Any]) -> None:
        w = d["spec"]["wan"]["routers"][0]
        w["usid"] = False
        w["locator"] = "fcbb:bbff:1::/48"
    errs = errors_of(m)
    assert any("spec.srv6.policies[0].waypoints[0]" in e and "mixes SID formats" in e
               for e in errs), errs


def test_a_node_is_no_usid_waypoint() -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["srv6"]["policies"][0]["waypoints"] = ["wan1", "tk-n1"]
    errs = errors_of(m)
    assert any("waypoints[1]" in e and "decapsulates" in e for e in errs), errs


@pytest.mark.parametrize("platform", ["eos", "nxos", "junos"])
def test_platforms_without_usid_are_refused(platform: str) -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["wan"]["routers"][0]["platform"] = platform
    errs = errors_of(m)
    assert any("spec.wan.routers[0].usid" in e and platform in e for e in errs), errs


def test_a_router_locator_pins_a_node_id_inside_the_block() -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["wan"]["routers"][0]["locator"] = "fcbc:bb00:7::/48"
    errs = errors_of(m)
    assert any("spec.wan.routers[0].locator" in e and "pins its node ID" in e
               for e in errs), errs


def test_usid_fields_need_the_usid_format() -> None:
    def m(d: dict[str, Any]) -> None:
        d["spec"]["srv6"]["locatorBlock"] = "fcbb:bb00::/32"
        d["spec"]["wan"]["routers"][0]["usid"] = True
    errs = errors_of(m, FULL)
    assert any("spec.srv6.locatorBlock" in e and "usid-f3216 only" in e for e in errs), errs
    assert any("spec.wan.routers[0].usid" in e for e in errs), errs


def test_mtu_counts_containers_not_segments() -> None:
    def ok(d: dict[str, Any]) -> None:
        d["spec"]["pods"]["mtu"] = 1460  # 1460 + 40 = 1500: one container, no SRH
    doc = copy.deepcopy(BASE)
    ok(doc)
    parse_fabric(yaml.safe_dump(doc))

    def bad(d: dict[str, Any]) -> None:
        d["spec"]["pods"]["mtu"] = 1461
    errs = errors_of(bad)
    assert any("spec.pods.mtu" in e and "1 container" in e for e in errs), errs
