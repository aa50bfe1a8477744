"""ToR side, every platform: a node may announce its blocks, its locator and host routes inside
the pools in its scope (and the ClusterIP aggregates), nothing else; max-prefix grows by what
the services may add; ECMP across per-node ASNs stays on."""

from __future__ import annotations

from typing import Any

import pytest

from flatroute.plan import plan
from render import render
from render.view import build_views
from tests.unit.services.util import fabric

PLATFORMS = ["frr", "sonic", "eos", "nxos", "junos"]


def _rules(view: Any, name: str) -> list[tuple[str, int | None, int | None]]:
    pl = next(p for p in view.prefix_lists if p.name == name)
    return [(str(r.prefix), r.ge, r.le) for r in pl.rules]


def test_node_lists_accept_host_routes_inside_the_pools_only() -> None:
    f = fabric()
    tor = next(v for v in build_views(f, plan(f), None) if v.router.name == "sv-tor")
    assert _rules(tor, "FR-NODE-SV-N1-V4") == [
        ("10.50.0.0/26", None, None), ("198.51.100.0/28", 32, 32),
        ("198.51.100.32/29", 32, 32), ("10.96.0.0/16", None, None)]
    assert _rules(tor, "FR-NODE-SV-N1-V6")[1:] == [("2001:db8:51::/124", 128, 128),
                                                   ("fd00:96::/112", None, None)]
    # the spine learns them too (clients behind it)
    assert ("198.51.100.0/28", 32, 32) in _rules(tor, "FR-SITE-V4")
    # 100 + 40 pool addresses + 2 ClusterIP aggregates
    assert tor.bgp.max_prefixes == 142


def test_a_pool_scoped_to_another_rack_is_not_accepted_here() -> None:
    def two_racks(d: dict[str, Any]) -> None:
        d["spec"]["sites"][0]["racks"].append({"name": "sv-r2", "tors": [{
            "name": "sv-tor2", "asn": 65202, "routerId": "10.0.50.3",
            "peering": {"ipv4": "10.0.52.1/24", "ipv6": "fd00:0:52::1/64"}}]})
        d["spec"]["nodes"].append({"name": "sv-n9", "rack": "sv-r2"})
        d["spec"]["services"]["pools"][1]["racks"] = ["sv-r2"]
        d["spec"]["services"]["static"] = d["spec"]["services"]["static"][:2]
    f = fabric(two_racks)
    views = {v.router.name: v for v in build_views(f, plan(f), None)}
    assert ("198.51.100.32/29", 32, 32) not in _rules(views["sv-tor"], "FR-NODE-SV-N1-V4")
    assert ("198.51.100.32/29", 32, 32) in _rules(views["sv-tor2"], "FR-NODE-SV-N9-V4")


def test_no_services_changes_nothing() -> None:
    def drop(d: dict[str, Any]) -> None:
        del d["spec"]["services"]
    f = fabric(drop)
    tor = next(v for v in build_views(f, plan(f), None) if v.router.name == "sv-tor")
    assert _rules(tor, "FR-NODE-SV-N1-V4") == [("10.50.0.0/26", None, None)]
    assert tor.bgp.max_prefixes == 100


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_platform_spells_the_pool_rules_limit_and_multipath(platform: str) -> None:
    f = fabric()
    text = "\n".join(x.text for x in render(f, platform=platform) if x.router == "sv-tor")
    assert "198.51.100.0/28" in text and "2001:db8:51::/124" in text
    assert "142" in text  # the sized maximum-prefix
    relax = {"frr": "bgp bestpath as-path multipath-relax",
             "sonic": "load_balance_mp_relax", "eos": "bgp bestpath as-path multipath-relax",
             "nxos": "bestpath as-path multipath-relax", "junos": "multiple-as"}[platform]
    assert relax in text
