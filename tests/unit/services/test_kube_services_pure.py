"""Service objects -> requests, held allocations and endpoint counts (pure, no API)."""

from __future__ import annotations

import ipaddress
from typing import Any

from controller.kube_services import (
    held_of,
    is_ours,
    ready_by_node,
    request_of,
    status_for,
)
from flatroute.plan.service_alloc import Allocation, AllocationProblem
from tests.unit.services.util import fabric


def svc(**spec: Any) -> dict[str, Any]:
    meta = spec.pop("meta", {})
    return {"metadata": {"name": "s", "namespace": "ns", **meta},
            "spec": {"type": "LoadBalancer", **spec}}


def test_ours_by_class_or_default() -> None:
    spec = fabric().services
    assert is_ours(svc(loadBalancerClass="flatroute.dev/bgp"), spec)
    assert not is_ours(svc(loadBalancerClass="other"), spec)
    assert not is_ours(svc(), spec)
    assert not is_ours({"spec": {"type": "ClusterIP"}}, spec)
    default = fabric(lambda d: d["spec"]["services"].update(default=True)).services
    assert is_ours(svc(), default)


def test_request_from_annotations_selector_and_spec() -> None:
    def selector(d: dict[str, Any]) -> None:
        d["spec"]["services"]["pools"][1]["serviceSelector"] = {"matchLabels": {"tier": "x"}}
    spec = fabric(selector).services
    r = request_of(svc(loadBalancerIP="198.51.100.3", ipFamilies=["IPv4"],
                       meta={"annotations": {"flatroute.dev/pool": "public",
                                             "flatroute.dev/load-balancer-ips":
                                                 "2001:db8:51::5, bad"}}), spec)
    assert r.key == "ns/s" and r.pools == ("public",) and r.families == (4,)
    assert r.addresses == (ipaddress.ip_address("2001:db8:51::5"),
                           ipaddress.ip_address("198.51.100.3"))
    assert request_of(svc(meta={"labels": {"tier": "x"}}), spec).pools == ("reserved",)


def test_held_from_status_and_status_written() -> None:
    spec = fabric().services
    obj = svc()
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.4"}]}}
    assert held_of(obj, spec) == Allocation("ns/s", "public",
                                            (ipaddress.ip_address("198.51.100.4"),))
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    assert held_of(obj, spec) is None  # not in our pools: not ours to keep
    st = status_for(None, AllocationProblem("ns/s", "PoolExhausted", "full"),
                    {"conditions": [{"type": "Other", "status": "True"}]})
    assert st["loadBalancer"] == {}
    assert [c["type"] for c in st["conditions"]] == ["Other", "flatroute.dev/AddressAllocated"]


def test_ready_by_node() -> None:
    slices = [{"endpoints": [
        {"nodeName": "a", "conditions": {"ready": True}},
        {"nodeName": "a", "conditions": {}},  # unset: ready
        {"nodeName": "b", "conditions": {"ready": False}},
        {"nodeName": "c", "conditions": {"ready": True, "terminating": True}},
        {"conditions": {"ready": True}}]}]
    assert ready_by_node(slices) == {"a": 2}
