"""Which node announces which Service address, and why; NodeState carries it."""

from __future__ import annotations

import ipaddress
from typing import Any

from flatroute.fabric.services import Source, TrafficPolicy
from flatroute.nodestate import from_json, from_plan, spec_doc, to_json
from flatroute.plan import Ledger, plan
from flatroute.plan.service_alloc import allocate
from flatroute.plan.services import (
    CLUSTER_IP_SERVICE,
    ServiceView,
    decide,
    static_requests,
    static_views,
)
from tests.unit.services.util import fabric

A = ipaddress.ip_address


def _prefixes(routes: dict[str, Any], node: str) -> set[str]:
    return {f"{r.service} {r.prefix}" for r in routes.get(node, ())}


def test_local_only_nodes_with_a_ready_endpoint() -> None:
    f = fabric()
    view = ServiceView("ns/web", TrafficPolicy.LOCAL, (A("198.51.100.5"),),
                       ready={"sv-n1": 2, "sv-n2": 0})
    routes = decide(f, [view])
    assert _prefixes(routes, "sv-n1") >= {"ns/web 198.51.100.5/32"}
    assert "ns/web 198.51.100.5/32" not in _prefixes(routes, "sv-n2")  # its endpoint not ready
    assert "ns/web 198.51.100.5/32" not in _prefixes(routes, "sv-n3")
    web = next(r for r in routes["sv-n1"] if r.service == "ns/web")
    assert web.reason == "Local: 2 ready endpoint(s) on this node (pool public)"
    assert web.source is Source.LOAD_BALANCER
    assert web.communities == ("65200:100", "65200:101")


def test_local_withdraws_when_the_last_endpoint_goes_and_returns() -> None:
    f = fabric()
    def on(ready: dict[str, int]) -> set[str]:
        r = decide(f, [ServiceView("ns/w", TrafficPolicy.LOCAL, (A("198.51.100.5"),),
                                   ready=ready)])
        return {n for n, rs in r.items() if any(x.service == "ns/w" for x in rs)}
    assert on({"sv-n1": 1, "sv-n2": 1}) == {"sv-n1", "sv-n2"}
    assert on({"sv-n1": 1}) == {"sv-n1"}
    assert on({"sv-n1": 1, "sv-n2": 1}) == {"sv-n1", "sv-n2"}


def test_cluster_every_node_in_scope_while_an_endpoint_is_ready() -> None:
    f = fabric()
    v = ServiceView("ns/api", TrafficPolicy.CLUSTER, (A("2001:db8:51::7"),),
                    external_ips=(A("198.51.100.34"),), ready={"sv-n3": 1})
    routes = decide(f, [v])
    for node in ("sv-n1", "sv-n2", "sv-n3"):
        assert {"ns/api 2001:db8:51::7/128", "ns/api 198.51.100.34/32"} <= _prefixes(routes,
                                                                                     node)
    ext = next(r for r in routes["sv-n1"] if str(r.prefix) == "198.51.100.34/32")
    assert ext.source is Source.EXTERNAL_IP and ext.communities == ("65200:200",)
    none_ready = decide(f, [ServiceView("ns/api", TrafficPolicy.CLUSTER,
                                        (A("2001:db8:51::7"),), ready={})])
    assert all(r.service != "ns/api" for rs in none_ready.values() for r in rs)


def test_pool_scope_limits_cluster_announcers() -> None:
    def two_racks(d: dict[str, Any]) -> None:
        d["spec"]["sites"][0]["racks"].append({"name": "sv-r2", "tors": [{
            "name": "sv-tor2", "asn": 65202, "routerId": "10.0.50.3",
            "peering": {"ipv4": "10.0.52.1/24", "ipv6": "fd00:0:52::1/64"}}]})
        d["spec"]["nodes"].append({"name": "sv-n9", "rack": "sv-r2"})
        d["spec"]["services"]["pools"][1]["racks"] = ["sv-r2"]
        d["spec"]["services"]["static"] = []
    f = fabric(two_racks)
    routes = decide(f, [ServiceView("ns/r", TrafficPolicy.CLUSTER, (A("198.51.100.33"),),
                                    ready={"sv-n1": 1})])
    assert {n for n, rs in routes.items() if any(x.service == "ns/r" for x in rs)} == {"sv-n9"}


def test_cluster_ip_aggregate_everywhere() -> None:
    routes = decide(fabric(), [])
    for node in ("sv-n1", "sv-n2", "sv-n3"):
        assert {f"{CLUSTER_IP_SERVICE} 10.96.0.0/16",
                f"{CLUSTER_IP_SERVICE} fd00:96::/112"} == _prefixes(routes, node)


def test_node_state_carries_service_routes_and_round_trips() -> None:
    f = fabric()
    alloc = allocate(f.services.pools, static_requests(f), {})
    routes = decide(f, static_views(f, alloc.allocations))
    p = plan(f, Ledger())
    st = from_plan(p, p.node("sv-n1"), routes["sv-n1"])
    back = from_json(to_json(st))
    assert back.services == st.services
    assert back == st
    web = [r for r in back.services if r.service == "default/web"]
    assert {str(r.prefix) for r in web} == {"198.51.100.2/32", "2001:db8:51::2/128"}
    # without services the document is exactly what it was before (no `services` key)
    assert "services" not in spec_doc(from_plan(p, p.node("sv-n1")))
