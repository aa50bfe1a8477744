"""Built-in resources through the real CoreV1Api."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client

from fakekube import FakeApiServer
from tests.unit.fakekube.conftest import status_of


def test_create_get_list_node(core: client.CoreV1Api) -> None:
    created = core.create_node({"metadata": {"name": "n1", "labels": {"rack": "r1"}}})
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    rv = int(created.metadata.resource_version)
    second = core.create_node({"metadata": {"name": "n2"}})
    assert int(second.metadata.resource_version) > rv
    listed = core.list_node()
    assert [n.metadata.name for n in listed.items] == ["n1", "n2"]
    assert listed.metadata.resource_version == second.metadata.resource_version
    assert core.read_node("n1").metadata.labels == {"rack": "r1"}


def test_create_twice_is_409_already_exists(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "n1"}})
    with pytest.raises(client.ApiException) as info:
        core.create_node({"metadata": {"name": "n1"}})
    status = status_of(info.value)
    assert (status["code"], status["reason"]) == (409, "AlreadyExists")
    assert status["details"] == {"name": "n1", "kind": "nodes"}
    assert status["message"] == 'nodes "n1" already exists'


def test_missing_object_is_404_status(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as info:
        core.read_node("nope")
    assert status_of(info.value)["reason"] == "NotFound"


def test_invalid_name_is_422(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as info:
        core.create_node({"metadata": {"name": "Not_Valid"}})
    status = status_of(info.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"


def test_generate_name(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", {"metadata": {"generateName": "x-"}})
    assert created.metadata.name.startswith("x-")
    assert len(created.metadata.name) == 7


def test_patch_node_strategic_json_and_merge(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "n1", "labels": {"a": "1", "b": "2"}}})
    # dict body: the client sends a strategic merge patch
    patched = core.patch_node("n1", {"metadata": {"labels": {"b": None, "c": "3"}}})
    assert patched.metadata.labels == {"a": "1", "c": "3"}
    # list body: the client sends a JSON patch
    patched = core.patch_node("n1", [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "9"},
        {"op": "add", "path": "/spec", "value": {"podCIDR": "10.0.0.0/24"}},
    ])
    assert patched.metadata.labels == {"a": "9", "c": "3"}
    assert patched.spec.pod_cidr == "10.0.0.0/24"
    patched = core.patch_node("n1", {"spec": {"unschedulable": True}},
                              _content_type="application/merge-patch+json")
    assert patched.spec.unschedulable is True
    assert patched.spec.pod_cidr == "10.0.0.0/24"


def test_failed_json_patch_test_op_is_422_and_changes_nothing(core: client.CoreV1Api) -> None:
    before = core.create_node({"metadata": {"name": "n1", "labels": {"a": "1"}}})
    with pytest.raises(client.ApiException) as info:
        core.patch_node("n1", [
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "test", "path": "/metadata/labels/a", "value": "other"},
        ])
    assert info.value.status == 422
    after = core.read_node("n1")
    assert after.metadata.labels == {"a": "1"}
    assert after.metadata.resource_version == before.metadata.resource_version


def test_label_and_field_selectors(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "n1", "labels": {"rack": "r1", "role": "edge"}}})
    core.create_node({"metadata": {"name": "n2", "labels": {"rack": "r2"}}})
    core.create_node({"metadata": {"name": "n3"}, "spec": {"unschedulable": True}})

    def names(**kwargs: str) -> list[str]:
        return [n.metadata.name for n in core.list_node(**kwargs).items]

    assert names(label_selector="rack=r1") == ["n1"]
    assert names(label_selector="rack!=r1") == ["n2", "n3"]
    assert names(label_selector="rack in (r1, r2),!role") == ["n2"]
    assert names(label_selector="rack notin (r2)") == ["n1", "n3"]
    assert names(label_selector="role") == ["n1"]
    assert names(field_selector="metadata.name=n2") == ["n2"]
    assert names(field_selector="metadata.name!=n2") == ["n1", "n3"]
    assert names(field_selector="spec.unschedulable=true") == ["n3"]
    with pytest.raises(client.ApiException) as info:
        core.list_node(field_selector="spec.podCIDR=x")
    assert status_of(info.value)["code"] == 400


def test_namespace_must_exist_and_delete_cascades(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    assert status_of(info.value)["message"] == 'namespaces "team" not found'
    namespace = core.create_namespace({"metadata": {"name": "team"}})
    assert namespace.status.phase == "Active"
    core.create_namespaced_config_map("team", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert [c.metadata.namespace for c in core.list_config_map_for_all_namespaces().items] == [
        "default", "team"]
    core.delete_namespace("team")
    assert [c.metadata.namespace for c in core.list_config_map_for_all_namespaces().items] == [
        "default"]


def test_namespace_in_body_must_match_url(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "c", "namespace": "kube-system"}})
    assert status_of(info.value)["code"] == 400


def test_secret_string_data_becomes_base64_data(core: client.CoreV1Api) -> None:
    secret = core.create_namespaced_secret(
        "default", {"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}})
    assert secret.data == {"password": base64.b64encode(b"hunter2").decode()}
    assert secret.type == "Opaque"
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_secret("default", {"metadata": {"name": "t"},
                                                  "data": {"x": "not base64!"}})
    assert info.value.status == 400


def test_replace_with_stale_resource_version_is_409(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "c"},
                                                          "data": {"k": "1"}})
    body = client.ApiClient().sanitize_for_serialization(first)
    body["data"] = {"k": "2"}
    second = core.replace_namespaced_config_map("c", "default", body)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    body["data"] = {"k": "3"}  # still carries the first resourceVersion
    with pytest.raises(client.ApiException) as info:
        core.replace_namespaced_config_map("c", "default", body)
    status = status_of(info.value)
    assert (status["code"], status["reason"]) == (409, "Conflict")
    assert "the object has been modified" in status["message"]
    assert core.read_namespaced_config_map("c", "default").data == {"k": "2"}
    # built-in types allow an unconditional update (no resourceVersion at all)
    del body["metadata"]["resourceVersion"]
    assert core.replace_namespaced_config_map("c", "default", body).data == {"k": "3"}


def test_no_op_write_keeps_resource_version(core: client.CoreV1Api, fake: FakeApiServer) -> None:
    created = core.create_node({"metadata": {"name": "n1", "labels": {"a": "1"}}})
    events = len(fake.store.history())
    again = core.patch_node("n1", {"metadata": {"labels": {"a": "1"}}})
    assert again.metadata.resource_version == created.metadata.resource_version
    assert len(fake.store.history()) == events


def test_node_status_subresource(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "n1"},
                      "status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    # a main-resource write cannot change status
    patched = core.patch_node("n1", {"metadata": {"labels": {"x": "y"}},
                                     "status": {"phase": "Running"}})
    assert patched.status.phase is None
    assert patched.metadata.labels == {"x": "y"}
    # the status subresource changes only status; strategic merge by condition type
    patched = core.patch_node_status("n1", {
        "metadata": {"labels": {"x": "changed"}},
        "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]},
    })
    assert patched.metadata.labels == {"x": "y"}
    assert sorted(c.type for c in patched.status.conditions) == ["NetworkUnavailable", "Ready"]


def test_delete_returns_status_and_finalizers_delay_deletion(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "plain"}})
    result = core.delete_node("plain")
    assert result["status"] == "Success"
    assert result["details"]["name"] == "plain"
    core.create_node({"metadata": {"name": "held", "finalizers": ["flatroute.dev/cleanup"]}})
    core.delete_node("held")
    held = core.read_node("held")
    assert held.metadata.deletion_timestamp is not None
    core.patch_node("held", [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(client.ApiException) as info:
        core.read_node("held")
    assert info.value.status == 404


def test_delete_precondition_conflict(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "n1"}})
    with pytest.raises(client.ApiException) as info:
        core.delete_node("n1", body={"preconditions": {"resourceVersion": "1"}})
    assert status_of(info.value)["reason"] == "Conflict"
    core.read_node("n1")


def test_pagination_with_limit_and_continue(core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_node({"metadata": {"name": f"n{i}"}})
    first = core.list_node(limit=2)
    assert [n.metadata.name for n in first.items] == ["n0", "n1"]
    assert first.metadata.remaining_item_count == 3
    second = core.list_node(limit=2, _continue=first.metadata._continue)
    assert [n.metadata.name for n in second.items] == ["n2", "n3"]
    third = core.list_node(limit=2, _continue=second.metadata._continue)
    assert [n.metadata.name for n in third.items] == ["n4"]
    assert third.metadata._continue is None
    assert third.metadata.resource_version == first.metadata.resource_version


def test_delete_collection_by_label(core: client.CoreV1Api) -> None:
    for name, team in (("a", "x"), ("b", "y"), ("c", "x")):
        core.create_namespaced_config_map("default", {"metadata": {"name": name,
                                                                   "labels": {"team": team}}})
    core.delete_collection_namespaced_config_map("default", label_selector="team=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["b"]


def test_dry_run_stores_nothing(core: client.CoreV1Api, fake: FakeApiServer) -> None:
    core.create_node({"metadata": {"name": "n1"}}, dry_run="All")
    assert fake.objects("nodes") == []
