"""Services and EndpointSlices as a real API server serves them: a Service's status is only
written through /status (cleared on create), it gets a ClusterIP, a class only with type
LoadBalancer; both list and watch across namespaces with the real client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakekube.server import FakeApiServer
from kube.api import ALL_NAMESPACES, ENDPOINTSLICES, SERVICES, KubeApi, KubeError
from tests.kube_util import api_for


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, KubeApi]]:
    with FakeApiServer(bookmark_interval=0.2) as fake:
        yield fake, api_for(fake)


def _svc(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"port": 80}], **spec},
            "status": {"loadBalancer": {"ingress": [{"ip": "6.6.6.6"}]}}}


def test_service_create_status_and_cluster_ip(api: tuple[FakeApiServer, KubeApi]) -> None:
    _fake, k = api
    a = k.create(SERVICES, _svc("a", type="LoadBalancer"), namespace="default")
    b = k.create(SERVICES, _svc("b"), namespace="default")
    assert a["status"] == {"loadBalancer": {}}  # a client cannot set status on create
    assert b["spec"]["type"] == "ClusterIP"
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    got = k.patch(SERVICES, "a", {"status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}},
                                  "spec": {"type": "NodePort"}}, status=True,
                  namespace="default")
    assert got["status"]["loadBalancer"]["ingress"] == [{"ip": "1.1.1.1"}]
    assert got["spec"]["type"] == "LoadBalancer"  # /status ignores the spec
    main = k.patch(SERVICES, "a", {"status": {"loadBalancer": {}}}, namespace="default")
    assert main["status"]["loadBalancer"]["ingress"] == [{"ip": "1.1.1.1"}]  # and vice versa
    with pytest.raises(KubeError) as exc:
        k.create(SERVICES, _svc("c", loadBalancerClass="x/y"), namespace="default")
    assert exc.value.status == 422


def test_endpointslices_list_and_watch_everywhere(api: tuple[FakeApiServer, KubeApi]) -> None:
    fake, k = api
    fake.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    items, rv = k.list(ENDPOINTSLICES, namespace=ALL_NAMESPACES)
    assert items == []
    stream = k.watch(ENDPOINTSLICES, rv, namespace=ALL_NAMESPACES, timeout_seconds=5)
    try:
        for ns in ("default", "x"):
            k.create(ENDPOINTSLICES, {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": ns,
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n1",
                               "conditions": {"ready": True}}]}, namespace=ns)
        seen = []
        for ev in stream:
            if ev.get("type") == "ADDED":
                seen.append(ev["object"]["metadata"]["namespace"])
            if len(seen) == 2:
                break
        assert seen == ["default", "x"]
    finally:
        stream.close()
    items, _ = k.list(ENDPOINTSLICES, namespace=ALL_NAMESPACES,
                      label_selector="kubernetes.io/service-name=web")
    assert len(items) == 2
