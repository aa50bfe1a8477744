from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from fakekube import FakeApiServer, client_configuration

GROUP = "flatroute.dev"

NODESTATE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "nodestates.flatroute.dev"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "nodestates", "singular": "nodestate", "kind": "NodeState",
                  "shortNames": ["ns8"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "selectableFields": [{"jsonPath": ".spec.node"}],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["node"],
                        "properties": {
                            "node": {"type": "string"},
                            "asn": {"type": "integer", "minimum": 1, "maximum": 4294967295},
                            "mode": {"type": "string", "enum": ["bgp", "static"],
                                     "default": "bgp"},
                            "prefixes": {"type": "array", "items": {"type": "string"}},
                            "extra": {"type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True},
                        },
                    },
                    "status": {"type": "object",
                               "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}

FABRIC_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "fabricconfigs.flatroute.dev"},
    "spec": {
        "group": GROUP,
        "scope": "Cluster",
        "names": {"plural": "fabricconfigs", "kind": "FabricConfig"},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {
                          "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval=0.2,
                       crds=[copy.deepcopy(NODESTATE_CRD), copy.deepcopy(FABRIC_CRD)]) as server:
        yield server
        assert server.server_errors == []  # no request crashed inside the fake


@pytest.fixture
def api(fake: FakeApiServer) -> Iterator[client.ApiClient]:
    api_client = client.ApiClient(client_configuration(fake.url))
    yield api_client
    api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def status_of(exc: client.ApiException) -> dict[str, Any]:
    """The Status body of an API error, checked to be a real failure Status."""
    body: dict[str, Any] = json.loads(exc.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def nodestate(name: str, node: str = "n1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "NodeState",
            "metadata": {"name": name}, "spec": {"node": node, **spec}}
