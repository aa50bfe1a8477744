"""Test hooks: error injection, the request log, direct object access, raw HTTP edges."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from fakekube import FakeApiServer, RequestRecord, client_configuration
from tests.unit.fakekube.conftest import status_of

ROOT = Path(__file__).resolve().parents[3]


def test_fail_next_injects_status_errors(core: client.CoreV1Api, fake: FakeApiServer) -> None:
    fake.fail_next(2, 503, method="GET", path_contains="/nodes")
    core.create_node({"metadata": {"name": "n1"}})  # POST does not match
    for _ in range(2):
        with pytest.raises(client.ApiException) as info:
            core.read_node("n1")
        status = status_of(info.value)
        assert (status["code"], status["reason"]) == (503, "ServiceUnavailable")
    assert core.read_node("n1").metadata.name == "n1"


def test_retry_after_is_honoured_by_the_client_transport(
        core: client.CoreV1Api, fake: FakeApiServer) -> None:
    """urllib3 (under the kubernetes client) silently retries 429/503 with Retry-After."""
    fake.fail_next(2, 429, retry_after=0)
    fake.clear_requests()
    assert core.list_node().items == []
    assert [r.status for r in fake.requests] == [429, 429, 200]


def test_fail_next_custom_reason(core: client.CoreV1Api, fake: FakeApiServer) -> None:
    fake.fail_next(code=429, reason="TooManyRequests", message="slow down")
    with pytest.raises(client.ApiException) as info:
        core.list_node()
    status = status_of(info.value)
    assert (status["reason"], status["message"]) == ("TooManyRequests", "slow down")
    core.list_node()


def test_request_log(core: client.CoreV1Api, fake: FakeApiServer) -> None:
    fake.clear_requests()
    core.create_node({"metadata": {"name": "n1"}})
    core.patch_node("n1", [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}])
    with pytest.raises(client.ApiException):
        core.read_node("missing")
    core.list_node(label_selector="a=b")
    log = fake.requests
    assert [(r.method, r.path, r.status) for r in log] == [
        ("POST", "/api/v1/nodes", 201),
        ("PATCH", "/api/v1/nodes/n1", 200),
        ("GET", "/api/v1/nodes/missing", 404),
        ("GET", "/api/v1/nodes", 200),
    ]
    assert log[1].content_type == "application/json-patch+json"
    assert log[1].body == [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]
    assert log[3].query == {"labelSelector": "a=b"}
    assert isinstance(log[0], RequestRecord)


def test_object_access_and_seeding(core: client.CoreV1Api, fake: FakeApiServer) -> None:
    seeded = fake.create_object({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "seed"}, "data": {"k": "v"}})
    assert seeded["metadata"]["namespace"] == "default"
    assert core.read_namespaced_config_map("seed", "default").data == {"k": "v"}
    core.create_node({"metadata": {"name": "n1"}})
    stored = fake.get_object("nodes", "n1")
    assert stored is not None
    assert stored["kind"] == "Node"
    stored["metadata"]["name"] = "mutated"  # a copy: the store is unaffected
    assert fake.get_object("nodes", "n1") is not None
    assert fake.get_object("nodes", "nope") is None
    assert [o["metadata"]["name"] for o in fake.objects("configmaps", namespace="default")] == [
        "seed"]
    assert fake.objects("nodestates", "flatroute.dev") == []
    with pytest.raises(KeyError):
        fake.objects("widgets")


def _raw(fake: FakeApiServer, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(f"{fake.url}{path}", data=body, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_raw_http_errors_are_status_objects(fake: FakeApiServer) -> None:
    code, body = _raw(fake, "POST", "/api/v1/nodes", b"{not json")
    assert (code, body["kind"], body["reason"]) == (400, "Status", "BadRequest")
    code, body = _raw(fake, "GET", "/apis/nothing.example/v1/widgets")
    assert (code, body["reason"]) == (404, "NotFound")
    _raw(fake, "POST", "/api/v1/nodes", b'{"metadata": {"name": "x"}}')
    code, body = _raw(fake, "PATCH", "/api/v1/nodes/x", b"a: b", "application/apply-patch+yaml")
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")  # no server-side apply
    code, body = _raw(fake, "POST", "/api/v1/nodes", b"kind: Node", "application/yaml")
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")
    code, body = _raw(fake, "PUT", "/api/v1/nodes", b"{}")
    assert (code, body["reason"]) == (405, "MethodNotAllowed")
    code, body = _raw(fake, "GET", "/api/v1/nodes/x/proxy")
    assert code == 404
    code, body = _raw(fake, "GET", "/api/v1/namespaces/default/configmaps?watch=true"
                                   "&resourceVersion=abc")
    assert (code, body["reason"]) == (400, "BadRequest")
    code, body = _raw(fake, "GET", "/api/v1/nodes?labelSelector=a%20in%20b")
    assert code == 400


def test_namespace_paths(fake: FakeApiServer) -> None:
    code, body = _raw(fake, "GET", "/api/v1/namespaces/default")
    assert (code, body["kind"], body["metadata"]["name"]) == (200, "Namespace", "default")
    code, body = _raw(fake, "GET", "/api/v1/namespaces/default/status")
    assert code == 200
    code, body = _raw(fake, "GET", "/api/v1/namespaces/default/configmaps")
    assert (code, body["kind"]) == (200, "ConfigMapList")
    code, body = _raw(fake, "GET", "/api/v1/namespaces/default/nodes")
    assert code == 404  # cluster-scoped resource under a namespace


def test_client_configuration_and_context_manager() -> None:
    with FakeApiServer() as fake:
        config = client_configuration(fake.url)
        assert config.host == fake.url
        assert fake.url.startswith("http://127.0.0.1:")
        assert client.CoreV1Api(client.ApiClient(config)).list_namespace().items
    with pytest.raises(urllib.error.URLError):  # stopped: connection refused
        urllib.request.urlopen(f"{fake.url}/version", timeout=2)


def test_module_runs_from_the_command_line() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fakekube", "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/version", timeout=5) as response:
            assert json.load(response)["gitVersion"].endswith("fakekube")
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_legacy_watch_path(fake: FakeApiServer) -> None:
    fake.create_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    url = f"{fake.url}/api/v1/watch/namespaces/default/configmaps?timeoutSeconds=10"
    with urllib.request.urlopen(url, timeout=5) as response:
        event = json.loads(response.readline())
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "a")
    assert event["object"]["kind"] == "ConfigMap"
