"""Helpers shared by the Kubernetes-mode tests: the fake with flatroute's CRDs, a fabric
from the examples as FabricConfig + RackPeerings + Nodes, and polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fakekube.server import FakeApiServer, client_configuration
from kube.api import KubeApi
from kube.seed import node_object, objects_from_fabric

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
    return objects_from_fabric(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()), fabric)


def node(name: str, rack: str, site: str | None = None, *, role: str | None = None,
         asn: int | None = None, addresses: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return node_object(name, rack, site, role=role, asn=asn, addresses=tuple(addresses))


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
