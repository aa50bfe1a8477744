"""Services benchmark (issue 15).

(a) In the lab (root, Kubernetes mode against the fake API server, the services example): an
    endpoint of a Local LoadBalancer Service becomes not ready / ready again in its
    EndpointSlice -> the node's path leaves / enters the ToR's kernel FIB. p50/p95 over
    `--changes` changes (half each way), measured from the API write to the FIB change.
(b) `--services` LoadBalancer Services allocated against the fake API server by the
    controller's Service adapter: wall time of the first cycle (allocate + status writes)
    and the number of API writes (goal: one status write per Service, none on the next cycle).

    python bench/services.py [--changes 20] [--services 10000] [--no-lab] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flatroute.fabric import parse_fabric
from kube.api import ENDPOINTSLICES, SERVICES
from tests.kube_util import EXAMPLES, api_for, eventually, fake_with_crds

FABRIC = EXAMPLES / "services.yaml"


def _flatroute(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def _paths(ns: str, prefix: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "route", "show", prefix], capture_output=True,
                         text=True, check=False).stdout
    return 0 if not out.strip() else max(1, out.count("nexthop"))


def _service(name: str, policy: str = "Local") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "flatroute.dev/bgp",
                     "externalTrafficPolicy": policy, "ipFamilies": ["IPv4"],
                     "ports": [{"port": 80}]}}


def _slice(name: str, ready2: bool) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"port": 80}],
            "endpoints": [{"addresses": ["10.50.0.2"], "nodeName": "sv-n1",
                           "conditions": {"ready": True}},
                          {"addresses": ["10.50.0.66"], "nodeName": "sv-n2",
                           "conditions": {"ready": ready2}}]}


def bench_lab(changes: int) -> dict[str, Any]:
    prefix = "bs" + uuid.uuid4().hex[:6]
    r = _flatroute("lab", "up", str(FABRIC), "--prefix", prefix, "--kubernetes", "--pods", "1")
    if r.returncode != 0:
        raise SystemExit(f"lab up failed: {r.stdout}{r.stderr}")
    try:
        state = json.loads(Path(f"/run/flatroute/lab/{prefix}/lab.json").read_text())
        from kubernetes import client

        from fakekube.server import client_configuration
        from kube.api import KubeApi

        api = KubeApi(client.ApiClient(client_configuration(state["api_url"])), timeout=5)
        api.create(SERVICES, _service("bench"), namespace="default")
        api.create(ENDPOINTSLICES, _slice("bench", True), namespace="default")

        def address() -> str | None:
            got = api.get(SERVICES, "bench", "default") or {}
            ing = ((got.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            return str(ing[0]["ip"]) if ing else None
        ip = eventually(address, 30, what="an address")
        prefix32, tor = f"{ip}/32", f"{prefix}-sv-tor"
        eventually(lambda: _paths(tor, prefix32) == 2, 60, what="2 paths at the ToR")
        gone, ready = [], []
        for i in range(changes):
            want_ready = i % 2 == 1
            want = 2 if want_ready else 1
            body = _slice("bench", want_ready)
            cur = api.get(ENDPOINTSLICES, "bench-1", "default") or {}
            body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            t0 = time.perf_counter()
            api.replace(ENDPOINTSLICES, "bench-1", body, namespace="default")
            while _paths(tor, prefix32) != want:
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"change {i}: the FIB never showed {want} paths")
                time.sleep(0.002)
            (ready if want_ready else gone).append((time.perf_counter() - t0) * 1000)
            time.sleep(0.3)
        both = gone + ready
        return {"changes": len(both), "p50_ms": round(statistics.median(both), 1),
                "p95_ms": round(_p95(both), 1),
                "gone_p50_ms": round(statistics.median(gone), 1),
                "ready_p50_ms": round(statistics.median(ready), 1)}
    finally:
        _flatroute("lab", "down", "--prefix", prefix)


def _p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def bench_allocation(count: int) -> dict[str, Any]:
    from controller.kube_services import KubeServices
    from kube.seed import objects_from_fabric

    doc = yaml.safe_load(FABRIC.read_text())
    doc["spec"]["services"]["pools"][0].update(ipv4=["100.64.0.0/16"],
                                               ipv6=["2001:db8:51::/112"])
    doc["spec"]["services"]["static"] = []
    fabric = parse_fabric(yaml.safe_dump(doc))
    with fake_with_crds() as fake:
        config, racks, nodes = objects_from_fabric(doc)
        for o in (config, *racks, *nodes):
            fake.create_object(o)
        for i in range(count):
            fake.create_object(_service(f"svc-{i:05d}", "Cluster"))
        adapter = KubeServices(api_for(fake), log=_Quiet())
        adapter.start()
        try:
            eventually(lambda: all(r.synced.is_set() for r in adapter.reflectors), 120,
                       what="watches synced")
            fake.clear_requests()
            t0 = time.perf_counter()
            _routes, problems = adapter.cycle(fabric)
            seconds = time.perf_counter() - t0
            writes = [r for r in fake.requests if r.method in ("POST", "PUT", "PATCH")]
            eventually(lambda: adapter.services.revision and all(
                (o.get("status") or {}).get("loadBalancer", {}).get("ingress")
                for o in adapter.services.items().values()), 120, interval=0.2,
                what="statuses back through the watch")
            fake.clear_requests()
            adapter.cycle(fabric)
            again = [r for r in fake.requests if r.method in ("POST", "PUT", "PATCH")]
        finally:
            adapter.stop()
    return {"services": count, "first_cycle_s": round(seconds, 2),
            "api_writes": len(writes), "writes_per_service": round(len(writes) / count, 3),
            "problems": len(problems), "writes_next_cycle": len(again)}


class _Quiet:
    def __getattr__(self, _name: str) -> Any:
        return lambda *_a, **_k: None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--no-lab", action="store_true", help="only (b), no root needed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if not args.no_lab:
        out["endpoint_to_fib"] = bench_lab(args.changes)
    out["allocation"] = bench_allocation(args.services)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for section, figures in out.items():
            print(section + ": " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
