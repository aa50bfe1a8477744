"""Helpers shared by the Kubernetes-mode tests: the fake with flatroute's CRDs, a fabric
from the examples as FabricConfig + RackPeerings + Nodes, and polling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from flatroute.kube.api import KubeApi
from flatroute.kube.crds import API_VERSION
from tests.fakekube.server import FakeApiServer, client_configuration

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "deploy" / "crds.yaml"
EXAMPLES = ROOT / "fabric-configs" / "examples"


def fake_with_crds(**kw: Any) -> FakeApiServer:
    fake = FakeApiServer(**{"bookmark_interval": 0.2, **kw})
    fake.load_crds(CRDS)
    fake.create_object({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "flatroute-system"}})
    return fake


def api_for(fake: FakeApiServer) -> KubeApi:
    from kubernetes import client

    return KubeApi(client.ApiClient(client_configuration(fake.url)), timeout=5)


def example_objects(name: str, fabric: str = "default") -> tuple[dict[str, Any],
                                                                  list[dict[str, Any]],
                                                                  list[dict[str, Any]]]:
    """(FabricConfig, RackPeerings, Nodes) equivalent to an example fabric file."""
    doc = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    spec = doc["spec"]
    racks = []
    rack_site = {}
    for s in spec["sites"]:
        for r in s["racks"]:
            rack_site[r["name"]] = s["name"]
            racks.append({"apiVersion": API_VERSION, "kind": "RackPeering",
                          "metadata": {"name": r["name"]},
                          "spec": {"site": s["name"], "tors": r["tors"]}})
    sites = [{k: v for k, v in s.items() if k != "racks"} for s in spec["sites"]]
    config = {"apiVersion": API_VERSION, "kind": "FabricConfig", "metadata": {"name": fabric},
              "spec": {**{k: v for k, v in spec.items() if k not in ("nodes", "sites")},
                       "sites": sites}}
    nodes = []
    for n in spec["nodes"]:
        obj = node(n["name"], n["rack"], rack_site[n["rack"]], role=n.get("role"),
                   asn=n.get("asn"))
        if n.get("uplinks"):
            obj["metadata"]["annotations"]["flatroute.dev/uplinks"] = json.dumps(n["uplinks"])
        nodes.append(obj)
    return config, racks, nodes


def node(name: str, rack: str, site: str | None = None, *, role: str | None = None,
         asn: int | None = None, addresses: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    labels = {"topology.kubernetes.io/zone": rack, "kubernetes.io/hostname": name}
    if site:
        labels["topology.kubernetes.io/region"] = site
    if role:
        labels["flatroute.dev/role"] = role
    notes = {"flatroute.dev/asn": str(asn)} if asn else {}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": notes},
            "status": {"addresses": [{"type": "InternalIP", "address": a} for a in addresses]
                       + [{"type": "Hostname", "address": name}]}}


def seed(fake: FakeApiServer, name: str, fabric: str = "default") -> list[dict[str, Any]]:
    config, racks, nodes = example_objects(name, fabric)
    fake.create_object(config)
    for r in racks:
        fake.create_object(r)
    for n in nodes:
        fake.create_object(n)
    return nodes


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
