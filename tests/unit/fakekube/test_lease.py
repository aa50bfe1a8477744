"""Leases as leader election uses them: create races and optimistic replace."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.unit.fakekube.conftest import status_of


def lease(holder: str) -> dict[str, object]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "flatroute-controller"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": "2024-01-01T00:00:00.000000Z",
                     "renewTime": "2024-01-01T00:00:00.000000Z"}}


def test_lease_create_race_and_conflicting_replace(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    mine = leases.create_namespaced_lease("kube-system", lease("a"))
    assert mine.spec.holder_identity == "a"
    with pytest.raises(client.ApiException) as info:
        leases.create_namespaced_lease("kube-system", lease("b"))
    status = status_of(info.value)
    assert (status["code"], status["reason"]) == (409, "AlreadyExists")
    assert status["details"] == {"name": "flatroute-controller", "kind": "leases",
                                 "group": "coordination.k8s.io"}
    assert status["message"] == (
        'leases.coordination.k8s.io "flatroute-controller" already exists')

    # two candidates read the same version; the first renew wins, the second conflicts
    seen = leases.read_namespaced_lease("flatroute-controller", "kube-system")
    seen.spec.renew_time = "2024-01-01T00:00:05.000000Z"
    renewed = leases.replace_namespaced_lease("flatroute-controller", "kube-system", seen)
    assert renewed.metadata.resource_version != seen.metadata.resource_version
    seen.spec.holder_identity = "b"
    with pytest.raises(client.ApiException) as info:
        leases.replace_namespaced_lease("flatroute-controller", "kube-system", seen)
    status = status_of(info.value)
    assert (status["code"], status["reason"]) == (409, "Conflict")
    current = leases.read_namespaced_lease("flatroute-controller", "kube-system")
    assert current.spec.holder_identity == "a"
    assert current.spec.renew_time.second == 5


def test_lease_list_and_delete(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    leases.create_namespaced_lease("kube-node-lease", lease("x"))
    assert [item.metadata.name for item in
            leases.list_lease_for_all_namespaces().items] == ["flatroute-controller"]
    leases.delete_namespaced_lease("flatroute-controller", "kube-node-lease")
    assert leases.list_namespaced_lease("kube-node-lease").items == []
