"""deploy/ validated against the Kubernetes schemas (kubernetes-validate ships them: offline),
plus the structural rules the schemas cannot express (least privilege, capabilities)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from kube import crds
from tests.kube_util import CRDS, fake_with_crds

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
K8S = "1.31.0"  # the oldest version the manifests promise (admission policy v1: 1.30)


def _kv() -> Any:
    # a dev extra (pyproject.toml), installed by scripts/install-deps: missing is a failure
    import kubernetes_validate

    return kubernetes_validate


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def all_docs() -> list[dict[str, Any]]:
    kust = docs("kustomization.yaml")[0]
    return [d for f in kust["resources"] for d in docs(f)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in all_docs() if d["kind"] == kind]


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    kv = _kv()
    seen = 0
    for d in all_docs():
        kv.validate(d, K8S, strict=True)  # strict: unknown fields are errors
        seen += 1
    assert seen >= 15


def test_kustomization_lists_every_manifest() -> None:
    kust = docs("kustomization.yaml")[0]
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == on_disk
    assert (DEPLOY.parent / "scripts" / "build-image").is_file()  # the one image definition


def test_crds_yaml_is_the_generated_one() -> None:
    regenerate = "python -m kube.crds > deploy/crds.yaml"
    assert CRDS.read_text() == crds.render(), regenerate


def test_crds_are_served_with_status_and_printer_columns() -> None:
    with fake_with_crds() as fake:  # the fake parses them like an API server would
        types = {t.kind: t for t in fake.load_crds(CRDS)}
    assert set(types) == {"FabricConfig", "RackPeering", "NodeState"}
    assert types["NodeState"].status_subresource and types["FabricConfig"].status_subresource
    ns = next(c for c in crds.crds() if c["spec"]["names"]["kind"] == "NodeState")
    version = ns["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and ns["spec"]["scope"] == "Cluster"
    cols = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert cols == ["ASN", "Sessions Up", "Announced", "Generation", "Applied Generation",
                    "Ready", "Age"]


def _rules(kind: str, name: str) -> list[dict[str, Any]]:
    return next(d for d in by_kind(kind) if d["metadata"]["name"] == name)["rules"]


def test_speaker_rbac_reads_nodestates_and_writes_only_their_status() -> None:
    rules = _rules("ClusterRole", "flatroute-speaker") + _rules("Role", "flatroute-speaker")
    writes = [(r["resources"], v) for r in rules for v in r["verbs"]
              if v not in ("get", "list", "watch")]
    assert writes == [(["nodestates/status"], "patch")]
    secret = next(r for r in rules if "secrets" in r["resources"])
    assert secret["verbs"] == ["get"] and secret["resourceNames"] == ["flatroute-bgp-md5"]
    policy = by_kind("ValidatingAdmissionPolicy")[0]
    assert "node-name" in policy["spec"]["validations"][0]["expression"]
    assert by_kind("ValidatingAdmissionPolicyBinding")[0]["spec"]["validationActions"] == [
        "Deny"]


def test_controller_rbac_is_least_privilege() -> None:
    rules = _rules("ClusterRole", "flatroute-controller")
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"]
    nodes = next(r for r in rules if r["resources"] == ["nodes"])
    assert nodes["verbs"] == ["get", "list", "watch"]
    assert not any("nodestates/status" in r["resources"] for r in rules)
    ns_rules = _rules("Role", "flatroute-controller")
    named = [r for r in ns_rules if set(r["verbs"]) & {"get", "update"}]
    assert all(r.get("resourceNames") for r in named)


def test_workloads() -> None:
    dep = by_kind("Deployment")[0]
    assert dep["spec"]["replicas"] == 2
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--kubernetes" in c["args"] and c["securityContext"]["capabilities"] == {
        "drop": ["ALL"]}
    ds = by_kind("DaemonSet")[0]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    speaker = pod["containers"][0]
    caps = speaker["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    # what bfdd needs is checked for real in tests/netns/speaker/test_deploy_caps.py
    assert sorted(caps["add"]) == ["BPF", "NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW", "SETGID",
                                   "SETUID", "SYS_ADMIN"]
    assert not speaker["securityContext"].get("privileged")
    init = pod["initContainers"][0]
    assert init["command"][:3] == ["flatroute", "cni", "install"]
    assert "--no-python-plugin" in init["command"]  # the host needs no Python
    assert any(a.startswith("--client-binary=") for a in init["command"])
    assert "add" not in init["securityContext"]["capabilities"]
    for container in [speaker, *pod["initContainers"]]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_cni_service_runs_on_every_node_with_what_it_needs() -> None:
    """The fast path's service: in the node's namespace, with the netns dir (propagated), the
    IPAM dir (and queue), the socket dir and the bin dir, at the paths the client uses."""
    from cni import delqueue, install, serve

    pod = by_kind("DaemonSet")[0]["spec"]["template"]["spec"]
    (svc,) = [c for c in pod["containers"] if c["name"] == "cni-service"]
    assert svc["args"] == ["cni", "serve", f"--socket={serve.DEFAULT_SOCKET}",
                           f"--delete-queue={delqueue.DEFAULT_DIR}"]
    # what the installed client has compiled in
    assert (install.DEFAULT_SOCKET, install.DEFAULT_DELETE_QUEUE) == (serve.DEFAULT_SOCKET,
                                                                      delqueue.DEFAULT_DIR)
    mounts = {m["mountPath"]: m for m in svc["volumeMounts"]}
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    for path in ("/run/flatroute", "/var/lib/cni", "/var/run/netns", "/opt/cni/bin"):
        assert host[mounts[path]["name"]] == path  # the same path inside as on the host
    assert mounts["/var/run/netns"]["mountPropagation"] in ("HostToContainer", "Bidirectional")
    assert os.path.dirname(serve.DEFAULT_SOCKET) == "/run/flatroute"
    assert delqueue.DEFAULT_DIR.startswith("/var/lib/cni/")
