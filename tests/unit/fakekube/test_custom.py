"""Custom resources registered from CRD manifests, through the real CustomObjectsApi."""

from __future__ import annotations

import copy
import json
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from fakekube import CrdError, FakeApiServer, crd_types
from tests.unit.fakekube.conftest import FABRIC_CRD, GROUP, NODESTATE_CRD, nodestate, status_of

NS = "default"
PLURAL = "nodestates"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_discovery_lists_crd_resources(fake: FakeApiServer) -> None:
    groups = get_json(f"{fake.url}/apis")
    names = [g["name"] for g in groups["groups"]]
    assert names == sorted(names)
    assert {"flatroute.dev", "coordination.k8s.io", "apiextensions.k8s.io"} <= set(names)
    resources = get_json(f"{fake.url}/apis/flatroute.dev/v1")
    assert resources["groupVersion"] == "flatroute.dev/v1"
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["nodestates"]["namespaced"] is True
    assert by_name["nodestates"]["kind"] == "NodeState"
    assert "nodestates/status" in by_name
    assert by_name["fabricconfigs"]["namespaced"] is False
    assert "fabricconfigs/status" not in by_name
    core = get_json(f"{fake.url}/api/v1")
    assert {"nodes", "nodes/status", "secrets", "configmaps", "namespaces"} <= {
        r["name"] for r in core["resources"]}
    assert get_json(f"{fake.url}/api")["versions"] == ["v1"]
    assert get_json(f"{fake.url}/version")["major"] == "1"
    version = client.VersionApi(client.ApiClient(
        client.Configuration(host=fake.url))).get_code()
    assert version.git_version.endswith("fakekube")


def test_create_get_list_patch(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, "v1", NS, PLURAL,
                                                     nodestate("a", asn=65001))
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["mode"] == "bgp"  # schema default applied
    custom.create_namespaced_custom_object(GROUP, "v1", NS, PLURAL, nodestate("b", node="n2"))
    got = custom.get_namespaced_custom_object(GROUP, "v1", NS, PLURAL, "a")
    assert got == created
    listed = custom.list_namespaced_custom_object(GROUP, "v1", NS, PLURAL)
    assert listed["kind"] == "NodeStateList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    assert listed["items"][0]["kind"] == "NodeState"
    # dict body: the client sends a JSON merge patch to custom objects
    patched = custom.patch_namespaced_custom_object(GROUP, "v1", NS, PLURAL, "a",
                                                    {"spec": {"asn": 65002, "mode": None}})
    assert patched["spec"] == {"node": "n1", "asn": 65002, "mode": "bgp"}
    assert patched["metadata"]["generation"] == 2
    by_field = custom.list_cluster_custom_object(GROUP, "v1", PLURAL,
                                                 field_selector="spec.node=n2")
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["b"]


def test_json_patch_on_custom_object(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1", NS, PLURAL,
                                           nodestate("a", prefixes=["10.0.0.0/24"]))
    patched = custom.patch_namespaced_custom_object(
        GROUP, "v1", NS, PLURAL, "a",
        [{"op": "add", "path": "/spec/prefixes/-", "value": "10.0.1.0/24"},
         {"op": "copy", "from": "/spec/prefixes/0", "path": "/spec/prefixes/-"},
         {"op": "remove", "path": "/spec/prefixes/0"}],
        _content_type="application/json-patch+json")
    assert patched["spec"]["prefixes"] == ["10.0.1.0/24", "10.0.0.0/24"]


def test_status_subresource_semantics(custom: client.CustomObjectsApi) -> None:
    body = nodestate("a", asn=65001)
    body["status"] = {"applied": True}
    created = custom.create_namespaced_custom_object(GROUP, "v1", NS, PLURAL, body)
    assert "status" not in created  # dropped on create with a status subresource
    with_status = custom.patch_namespaced_custom_object_status(
        GROUP, "v1", NS, PLURAL, "a",
        {"status": {"routes": 3}, "spec": {"asn": 1}, "metadata": {"labels": {"x": "y"}}})
    assert with_status["status"] == {"routes": 3}
    assert with_status["spec"]["asn"] == 65001
    assert "labels" not in with_status["metadata"]
    assert with_status["metadata"]["generation"] == 1  # status never bumps generation
    after = custom.patch_namespaced_custom_object(
        GROUP, "v1", NS, PLURAL, "a",
        {"status": {"routes": 99}, "metadata": {"labels": {"x": "y"}}})
    assert after["status"] == {"routes": 3}
    assert after["metadata"]["labels"] == {"x": "y"}
    assert after["metadata"]["generation"] == 1  # metadata-only change
    assert int(after["metadata"]["resourceVersion"]) > int(
        with_status["metadata"]["resourceVersion"])
    replaced_status = custom.replace_namespaced_custom_object_status(
        GROUP, "v1", NS, PLURAL, "a", {**after, "status": {"routes": 4}})
    assert replaced_status["status"] == {"routes": 4}


def test_replace_needs_resource_version_and_detects_conflicts(
        custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, "v1", NS, PLURAL, nodestate("a"))
    unconditional = copy.deepcopy(created)
    del unconditional["metadata"]["resourceVersion"]
    with pytest.raises(client.ApiException) as info:
        custom.replace_namespaced_custom_object(GROUP, "v1", NS, PLURAL, "a", unconditional)
    assert status_of(info.value)["reason"] == "Invalid"
    first = copy.deepcopy(created)
    first["spec"]["asn"] = 1
    updated = custom.replace_namespaced_custom_object(GROUP, "v1", NS, PLURAL, "a", first)
    assert updated["metadata"]["generation"] == 2
    stale = copy.deepcopy(created)
    stale["spec"]["asn"] = 2
    with pytest.raises(client.ApiException) as info:
        custom.replace_namespaced_custom_object(GROUP, "v1", NS, PLURAL, "a", stale)
    assert status_of(info.value)["reason"] == "Conflict"
    # a merge patch carrying a resourceVersion is a precondition too
    with pytest.raises(client.ApiException) as info:
        custom.patch_namespaced_custom_object(
            GROUP, "v1", NS, PLURAL, "a",
            {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}})
    assert info.value.status == 409


def test_strategic_merge_patch_is_refused_for_custom_resources(
        custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1", NS, PLURAL, nodestate("a"))
    with pytest.raises(client.ApiException) as info:
        custom.patch_namespaced_custom_object(
            GROUP, "v1", NS, PLURAL, "a", {"spec": {"asn": 3}},
            _content_type="application/strategic-merge-patch+json")
    assert status_of(info.value)["code"] == 415


def test_schema_validation_and_pruning(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(client.ApiException) as info:
        custom.create_namespaced_custom_object(GROUP, "v1", NS, PLURAL,
                                               nodestate("a", asn="not-a-number", mode="ospf"))
    status = status_of(info.value)
    assert status["code"] == 422
    assert {c["field"] for c in status["details"]["causes"]} == {"spec.asn", "spec.mode"}
    with pytest.raises(client.ApiException) as info:
        custom.create_namespaced_custom_object(GROUP, "v1", NS, PLURAL,
                                               {**nodestate("b"), "spec": {}})
    assert status_of(info.value)["details"]["causes"][0]["field"] == "spec.node"
    created = custom.create_namespaced_custom_object(
        GROUP, "v1", NS, PLURAL,
        {**nodestate("c", extra={"free": {"form": 1}}), "junk": 1,
         "spec": {"node": "n1", "unknown": True, "extra": {"free": {"form": 1}}}})
    assert "junk" not in created
    assert created["spec"] == {"node": "n1", "mode": "bgp", "extra": {"free": {"form": 1}}}


def test_cluster_scoped_custom_resource(custom: client.CustomObjectsApi) -> None:
    body = {"apiVersion": f"{GROUP}/v1", "kind": "FabricConfig", "metadata": {"name": "main"},
            "spec": {"asn": 65000}, "status": {"ok": True}}
    created = custom.create_cluster_custom_object(GROUP, "v1", "fabricconfigs", body)
    assert created["status"] == {"ok": True}  # no status subresource: status is plain data
    assert "namespace" not in created["metadata"]
    patched = custom.patch_cluster_custom_object(GROUP, "v1", "fabricconfigs", "main",
                                                 {"status": {"ok": False}})
    assert patched["metadata"]["generation"] == 2  # without the subresource, status counts
    with pytest.raises(client.ApiException) as info:
        custom.patch_cluster_custom_object_status(GROUP, "v1", "fabricconfigs", "main",
                                                  {"status": {}})
    assert info.value.status == 404
    deleted = custom.delete_cluster_custom_object(GROUP, "v1", "fabricconfigs", "main")
    assert deleted["metadata"]["name"] == "main"


def test_crd_via_apiextensions_api_registers_and_unregisters(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    crd = copy.deepcopy(NODESTATE_CRD)
    crd["metadata"]["name"] = "torpeers.flatroute.dev"
    crd["spec"]["names"] = {"plural": "torpeers", "kind": "TorPeer"}
    crd["spec"]["versions"].append({**crd["spec"]["versions"][0], "name": "v1alpha1",
                                    "storage": False})
    created = ext.create_custom_resource_definition(crd)
    conditions = {c.type: c.status for c in created.status.conditions}
    assert conditions["Established"] == "True"
    obj = custom.create_namespaced_custom_object(
        GROUP, "v1", NS, "torpeers",
        {"apiVersion": f"{GROUP}/v1", "kind": "TorPeer", "metadata": {"name": "t"},
         "spec": {"node": "n1"}})
    # every served version sees the same object (no conversion: apiVersion is rewritten)
    alpha = custom.get_namespaced_custom_object(GROUP, "v1alpha1", NS, "torpeers", "t")
    assert alpha["apiVersion"] == f"{GROUP}/v1alpha1"
    assert alpha["metadata"]["uid"] == obj["metadata"]["uid"]
    ext.delete_custom_resource_definition("torpeers.flatroute.dev")
    with pytest.raises(client.ApiException) as info:
        custom.list_namespaced_custom_object(GROUP, "v1", NS, "torpeers")
    assert info.value.status == 404


def test_bad_crd_manifest_names_the_field() -> None:
    crd = copy.deepcopy(FABRIC_CRD)
    crd["metadata"]["name"] = "wrong.flatroute.dev"
    with pytest.raises(CrdError, match=r"metadata\.name"):
        crd_types(crd)
    del crd["spec"]["names"]["kind"]
    with pytest.raises(CrdError, match=r"spec\.names\.kind: Required value"):
        crd_types(crd)
    dotless = copy.deepcopy(FABRIC_CRD)
    dotless["metadata"]["name"] = "fabricconfigs.flatroute"
    dotless["spec"]["group"] = "flatroute"
    with pytest.raises(CrdError, match=r"spec\.group"):
        FakeApiServer().register_crd(dotless)


def test_load_crds_from_yaml(tmp_path: Any) -> None:
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "crds.yaml"
    path.write_text(yaml.safe_dump_all([NODESTATE_CRD, {"kind": "ConfigMap"}, FABRIC_CRD]))
    with FakeApiServer() as fake:
        types = fake.load_crds(path)
        assert sorted(t.plural for t in types) == ["fabricconfigs", "nodestates"]
        assert [o["metadata"]["name"] for o in fake.objects(
            "customresourcedefinitions", "apiextensions.k8s.io")] == [
            "fabricconfigs.flatroute.dev", "nodestates.flatroute.dev"]
