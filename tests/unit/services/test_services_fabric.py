"""spec.services: parsing, defaults and every validation rule, with field paths."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from flatroute.fabric.services import LOAD_BALANCER_CLASS, Source, TrafficPolicy
from tests.unit.services.util import errors, fabric


def test_example_values() -> None:
    s = fabric().services
    assert [p.name for p in s.pools] == ["public", "reserved"]
    assert s.pools[1].auto_assign is False
    assert s.cluster_ips.ipv4 == ipaddress.IPv4Network("10.96.0.0/16")
    assert s.load_balancer_class == LOAD_BALANCER_CLASS and s.default_class is False
    web = s.static[0]
    assert (web.key, web.policy, web.endpoints) == ("default/web", TrafficPolicy.LOCAL,
                                                    ("sv-n1-p0", "sv-n2-p0"))
    assert web.ports[0].port == 80 and web.ports[0].protocol == "TCP"
    # the source's communities, then the pool's own, each once
    assert s.communities_for(Source.LOAD_BALANCER, s.pools[0]) == ("65200:100", "65200:101")
    assert s.communities_for(Source.EXTERNAL_IP, s.pools[0]) == ("65200:200",)


def test_no_services_section_is_empty() -> None:
    def drop(d: dict[str, Any]) -> None:
        del d["spec"]["services"]
    assert not fabric(drop).services.enabled


def _svc(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = d["spec"]["services"]
    return out


CASES: list[tuple[str, Any, str, str]] = [
    ("pool overlaps pod pool",
     lambda d: _svc(d)["pools"][0].update(ipv4=["10.50.1.0/24"]),
     "spec.services.pools[0].ipv4[0]", "overlaps 10.50.0.0/20 at spec.sites[0].pools.ipv4[0]"),
    ("pool overlaps the ToR subnet",
     lambda d: _svc(d)["pools"][0].update(ipv4=["10.0.51.128/28"]),
     "spec.services.pools[0].ipv4[0]", "at spec.sites[0].racks[0].tors[0].peering.ipv4"),
    ("pools overlap each other",
     lambda d: _svc(d)["pools"][1].update(ipv4=["198.51.100.8/29"]),
     "spec.services.pools[1].ipv4[0]", "overlaps 198.51.100.0/28 at spec.services.pools[0]"),
    ("cluster range overlaps underlay",
     lambda d: (d["spec"]["sites"][0].update(underlay={"ipv4": "10.96.5.0/24"})),
     "spec.services.clusterIPs.ipv4", "overlaps 10.96.5.0/24 at spec.sites[0].underlay.ipv4"),
    ("pool overlaps locator block",
     lambda d: (d["spec"]["sites"][0].update(locatorBlock="2001:db8:51::/48")),
     "spec.services.pools[0].ipv6[0]", "at spec.sites[0].locatorBlock"),
    ("unknown site", lambda d: _svc(d)["pools"][0].update(sites=["mars"]),
     "spec.services.pools[0].sites[0]", "unknown site"),
    ("unknown rack", lambda d: _svc(d)["pools"][0].update(racks=["r9"]),
     "spec.services.pools[0].racks[0]", "unknown rack"),
    ("pool family its site lacks",
     lambda d: d["spec"]["sites"][0]["pools"].pop("ipv6"),
     "spec.services.pools[0].ipv6", "site dc has no IPv6 pod pool"),
    ("duplicate pool", lambda d: _svc(d)["pools"][1].update(name="public"),
     "spec.services.pools[1].name", "duplicate pool name"),
    ("bad community", lambda d: _svc(d)["communities"].update(clusterIP=["x:1"]),
     "spec.services.communities.clusterIP[0]", "standard community"),
    ("unknown key", lambda d: _svc(d).update(colour=1), "spec.services.colour",
     "unknown key"),
    ("static unknown pool", lambda d: _svc(d)["static"][0].update(pool="nope"),
     "spec.services.static[0].pool", "unknown pool"),
    ("static address outside pools",
     lambda d: _svc(d)["static"][2].update(addresses=["192.0.2.1"]),
     "spec.services.static[2].addresses[0]", "lies in no service pool"),
    ("static address outside its pool",
     lambda d: _svc(d)["static"][0].update(addresses=["198.51.100.33"]),
     "spec.services.static[0].addresses[0]", "lies outside pool public"),
    ("external IP outside pools",
     lambda d: _svc(d)["static"][2].update(externalIPs=["192.0.2.9"]),
     "spec.services.static[2].externalIPs[0]", "lies in no service pool"),
    ("address claimed twice",
     lambda d: _svc(d)["static"][1].update(externalIPs=["198.51.100.33"]),
     "spec.services.static[2].addresses[0]", "already the address of service default/api"),
    ("endpoint of no node",
     lambda d: _svc(d)["static"][0].update(endpoints=["ghost-p0"]),
     "spec.services.static[0].endpoints[0]", "NODE-pN"),
    ("nothing to announce", lambda d: _svc(d)["static"][1].pop("pool"),
     "spec.services.static[1]", "give a pool, addresses or externalIPs"),
    ("bad policy", lambda d: _svc(d)["static"][1].update(externalTrafficPolicy="Any"),
     "spec.services.static[1].externalTrafficPolicy", "must be one of"),
    ("duplicate static", lambda d: _svc(d)["static"][1].update(name="web"),
     "spec.services.static[1].name", "duplicate service"),
]


@pytest.mark.parametrize(("what", "mutate", "path", "message"), CASES,
                         ids=[c[0] for c in CASES])
def test_validation(what: str, mutate: Any, path: str, message: str) -> None:
    del what
    got = errors(mutate)
    assert any(f"services.yaml: {path}" in e and message in e for e in got), got


def test_endpoint_outside_pool_scope() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["spec"]["sites"][0]["racks"].append({"name": "sv-r2", "tors": [{
            "name": "sv-tor2", "asn": 65202, "routerId": "10.0.50.3",
            "peering": {"ipv4": "10.0.52.1/24", "ipv6": "fd00:0:52::1/64"}}]})
        d["spec"]["nodes"].append({"name": "sv-n9", "rack": "sv-r2"})
        _svc(d)["pools"][0]["racks"] = ["sv-r1"]
        _svc(d)["static"][0]["endpoints"] = ["sv-n9-p0"]
    got = errors(mutate)
    assert any("spec.services.static[0].endpoints[0]: runs on sv-n9, outside the scope of "
               "pool public" in e for e in got), got


def test_rack_outside_pool_sites() -> None:
    def mutate(d: dict[str, Any]) -> None:
        _svc(d)["pools"][0].update(sites=["dc"], racks=["sv-r1"])
    fabric(mutate)  # a rack inside the listed site is fine
