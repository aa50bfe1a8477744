"""LoadBalancer Services in Kubernetes mode against the FAKE API server: the real client, the
real leader-elected controller. Allocation into status.loadBalancer.ingress (one status write
per Service), requested addresses and pools, classes, stability across a restart and a leader
change, release on delete, exhaustion as a condition and an Event, EndpointSlices deciding
which NodeStates carry a Local service. No root needed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fakekube.server import FakeApiServer
from kube.api import ENDPOINTSLICES, SERVICES
from tests.integration.test_kube_mode import Running, nodestates
from tests.kube_util import api_for, eventually, fake_with_crds, seed


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with fake_with_crds() as f:
        yield f
        assert f.server_errors == []


@pytest.fixture
def running(fake: FakeApiServer) -> Iterator[Running]:
    r = Running(fake)
    try:
        yield r
    finally:
        r.stop_all()


def service(name: str, *, cls: str | None = "flatroute.dev/bgp", policy: str = "Cluster",
            ip: str | None = None, annotations: dict[str, str] | None = None,
            labels: dict[str, str] | None = None, families: list[str] | None = None
            ) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "LoadBalancer", "ports": [{"port": 80}],
                            "externalTrafficPolicy": policy}
    if cls:
        spec["loadBalancerClass"] = cls
    if ip:
        spec["loadBalancerIP"] = ip
    if families:
        spec["ipFamilies"] = families
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": annotations or {}, "labels": labels or {}},
            "spec": spec}


def endpoints(svc: str, nodes: dict[str, bool]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"port": 80}],
            "endpoints": [{"addresses": [f"10.50.0.{i + 2}"], "nodeName": n,
                           "conditions": {"ready": ready}}
                          for i, (n, ready) in enumerate(nodes.items())]}


def ingress(fake: FakeApiServer, name: str) -> list[str]:
    obj = fake.get_object("services", name, "default")
    return [i["ip"] for i in ((obj.get("status") or {}).get("loadBalancer") or {})
            .get("ingress") or ()]


def status_writes(fake: FakeApiServer) -> list[Any]:
    return [r for r in fake.requests if r.method == "PATCH" and "/services/" in r.path
            and r.path.endswith("/status")]


def announced_by(fake: FakeApiServer, prefix: str) -> set[str]:
    return {n for n, o in nodestates(fake).items()
            if any(s["prefix"] == prefix for s in o["spec"].get("services") or ())}


def test_allocation_request_class_and_one_status_write(fake: FakeApiServer,
                                                       running: Running) -> None:
    seed(fake, "services")
    fake.create_object(service("web"))
    fake.create_object(service("asked", ip="198.51.100.33"))  # from the manual pool
    fake.create_object(service("other", cls="example.com/lb"))  # not ours
    fake.create_object(service("noclass", cls=None))  # not ours: flatroute is not default
    fake.create_object(service("v4only", families=["IPv4"],
                               annotations={"flatroute.dev/pool": "public"}))
    ctl = running.controller()
    eventually(lambda: ingress(fake, "web") and ingress(fake, "v4only")
               and ingress(fake, "asked"), what="addresses")
    assert ingress(fake, "web") == ["198.51.100.2", "2001:db8:51::1"]
    assert ingress(fake, "asked") == ["198.51.100.33"]
    assert ingress(fake, "v4only") == ["198.51.100.1"]
    assert ingress(fake, "other") == [] and ingress(fake, "noclass") == []
    cond = next(c for c in fake.get_object("services", "web", "default")["status"]
                ["conditions"] if c["type"] == "flatroute.dev/AddressAllocated")
    assert cond["status"] == "True"
    time.sleep(0.5)
    assert len(status_writes(fake)) == 3  # one per Service, nothing more in a steady state
    assert ctl.services.writes == 3
    # Cluster policy: no endpoint anywhere yet, so nobody announces
    assert announced_by(fake, "198.51.100.2/32") == set()


def test_endpoint_slices_decide_local_announcers(fake: FakeApiServer,
                                                 running: Running) -> None:
    seed(fake, "services")
    fake.create_object(service("web", policy="Local"))
    fake.create_object(endpoints("web", {"sv-n1": True, "sv-n2": True, "sv-n3": False}))
    running.controller()
    eventually(lambda: announced_by(fake, "198.51.100.1/32") == {"sv-n1", "sv-n2"},
               what="Local announcers from the EndpointSlice")
    route = next(s for s in nodestates(fake)["sv-n1"]["spec"]["services"]
                 if s["prefix"] == "198.51.100.1/32")
    assert route["reason"].startswith("Local: 1 ready endpoint")
    assert route["communities"] == ["65200:100", "65200:101"]
    # sv-n2's endpoint stops being ready: its NodeState loses the route
    sl = fake.get_object("endpointslices", "web-abc", "default", group="discovery.k8s.io")
    sl["endpoints"][1]["conditions"]["ready"] = False
    api_for(fake).replace(ENDPOINTSLICES, "web-abc", sl, namespace="default")
    eventually(lambda: announced_by(fake, "198.51.100.1/32") == {"sv-n1"},
               what="sv-n2 withdraws")
    assert {"10.96.0.0/16"} <= {s["prefix"] for s in nodestates(fake)["sv-n3"]["spec"]
                                ["services"]}  # the ClusterIP aggregate everywhere


def test_restart_and_leader_change_keep_addresses_delete_frees(fake: FakeApiServer,
                                                               running: Running) -> None:
    seed(fake, "services")
    for n in ("a", "b", "c"):
        fake.create_object(service(n, families=["IPv4"]))
    running.controller("ctl-a", lease=(1.0, 0.6, 0.1))
    eventually(lambda: all(ingress(fake, n) for n in "abc"), what="three addresses")
    before = {n: ingress(fake, n) for n in "abc"}
    running.stop_all()
    fake.clear_requests()
    api_for(fake).delete(SERVICES, "b", namespace="default")
    fake.create_object(service("d", families=["IPv4"]))
    second = running.controller("ctl-b", lease=(1.0, 0.6, 0.1))  # a new leader, fresh disk
    eventually(lambda: ingress(fake, "d"), what="d allocated")
    assert ingress(fake, "a") == before["a"] and ingress(fake, "c") == before["c"]
    assert ingress(fake, "d") == before["b"]  # b's address went back to the pool
    assert second.services.writes == 1  # only d's status was written


def test_exhaustion_is_a_condition_and_an_event(fake: FakeApiServer, running: Running) -> None:
    seed(fake, "services")
    fake.create_object(service("m1", annotations={"flatroute.dev/pool": "reserved"}))
    for i in range(7):
        fake.create_object(service(f"m{i + 2}", annotations={"flatroute.dev/pool": "reserved"}))
    ctl = running.controller()

    def failed() -> list[str]:
        out = []
        for i in range(1, 9):
            st = fake.get_object("services", f"m{i}", "default").get("status") or {}
            out += [f"m{i}" for c in st.get("conditions") or ()
                    if c["reason"] == "PoolExhausted" and c["status"] == "False"]
        return out
    eventually(lambda: len(failed()) == 2, what="two Services without an address")
    events = [e for e in fake.objects("events", namespace="default")
              if e["reason"] == "PoolExhausted"]
    assert len(events) == 2 and events[0]["involvedObject"]["kind"] == "Service"
    assert ctl.cycles >= 1  # and the controller keeps running
