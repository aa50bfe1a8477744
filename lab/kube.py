"""`flatroute lab up --kubernetes`: the same lab with the Kubernetes API as the source of
truth. There is no Kubernetes API server on these machines, so the lab runs the project's
wire-level FAKE (the `fakekube` package, installed with flatroute) and seeds it with the
fabric as
FabricConfig, RackPeerings and Nodes; the controller and every speaker then run with
--kubernetes against it, the speakers through a TCP forwarder into their namespaces.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from flatroute.errors import FlatrouteError
from lab import host
from lab.state import LabState, Proc


class KubeLabError(FlatrouteError):
    """Kubernetes mode cannot start."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise KubeLabError(f"the fake API server did not listen on port {port}")


def start(state: LabState, fabric_copy: Path) -> str:
    """Start the fake API server, seed it, forward its port into every node; return its URL."""
    from kube.crds import render as render_crds

    crds = state.dir / "crds.yaml"  # the CRDs of this version, as deploy/crds.yaml holds them
    crds.write_text(render_crds())
    port = _free_port()
    log = state.dir / "logs" / "fake-apiserver.log"
    pid = host.spawn(None, [sys.executable, "-m", "fakekube", "--port", str(port),
                            "--crd", str(crds)], log)
    state.processes.append(Proc("fake-apiserver", pid, None, str(log)))
    state.save()
    _wait_port(port)
    url = f"http://127.0.0.1:{port}"
    _seed(url, yaml.safe_load(fabric_copy.read_text()))
    return url


def forward(state: LabState, namespaces: list[str], url: str) -> None:
    port = url.rsplit(":", 1)[1]
    args: list[str] = []
    for ns in namespaces:
        args += [ns, port]
    log = state.dir / "logs" / "forwarder.log"
    pid = host.spawn(None, [sys.executable, "-m", "lab.forward", *args], log)
    state.processes.append(Proc("forwarder", pid, None, str(log)))
    state.save()


def _seed(url: str, doc: dict[str, Any]) -> None:
    from kubernetes import client

    from kube.api import NODES, connect
    from kube.objects import FABRICCONFIGS, RACKPEERINGS
    from kube.seed import objects_from_fabric

    cfg = client.Configuration()
    cfg.host = url
    client.CoreV1Api(client.ApiClient(cfg)).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name="flatroute-system")))
    api = connect(None, url)
    config, racks, nodes = objects_from_fabric(doc)
    api.create(FABRICCONFIGS, config)
    for rack in racks:
        api.create(RACKPEERINGS, rack)
    for node in nodes:
        api.create(NODES, node)
