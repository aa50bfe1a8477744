"""A real container runtime drives the plugin: Debian's containerd 1.6, `ctr run --cni`.

The node is a namespace (conftest.Node: an uplink to a ToR namespace, default routes); this
test's own containerd runs in it, with its own root, state and socket. `flatroute cni install`
puts the static client and the conflist (flatroute-cni, then the reference portmap plugin) in
this test's CNI directories, which every `ctr run` sees as /etc/cni/net.d and /opt/cni/bin
(tests/containerd_util.py). The client reaches `flatroute cni serve` in the node namespace.

ctr 1.6 has no port-mapping flag: the mapping is written into the conflist as the
`runtimeConfig` a runtime injects for portmap's `portMappings` capability, one host port per
container, each read by its own `ctr run` when it starts. The conflist is cniVersion 1.0.0:
containerd 1.6's libcni rejects a 1.1.0 result and Debian's portmap a 1.1.0 config.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REF, Node, Service

from tests.containerd_util import BUSYBOX, Containerd
from tests.netns_util import need_tool, sh, unique

pytestmark = pytest.mark.root

NODE_IP = "192.0.2.1"  # conftest.Node's uplink address; the ToR is 192.0.2.2


@pytest.fixture
def runtime(node: Node) -> Iterator[tuple[Containerd, Path]]:
    need_tool("containerd", "ctr", "runc", "unshare", "iptables", BUSYBOX, f"{REF}/portmap")
    cni_dir = node.tmp / "ctr-cni"
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "cni", "install", "--bin-dir",
         str(cni_dir / "bin"), "--conf-dir", str(cni_dir / "net.d"), "--name", "frnet",
         "--socket", str(node.socket), "--delete-queue", str(node.queue), "--node-file",
         str(node.node_file), "--data-dir", str(node.data), "--portmap", "--cni-version",
         "1.0.0", "--no-python-plugin"], capture_output=True, text=True, check=True)
    assert "flatroute-cni-py" not in out.stdout  # a node needs no Python plugin
    (cni_dir / "bin" / "portmap").symlink_to(f"{REF}/portmap")
    # a Kubernetes node forwards (kubelet insists): the ToR's packets to a mapped port arrive
    # on the uplink and leave through the pod's veth
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=node.name)
    base = node.tmp / "ctrd"
    base.mkdir()
    rt = Containerd(node.name, base, unique("ftc"))
    try:
        rt.import_image()
        yield rt, cni_dir
    finally:
        rt.close()


def _map_port(cni_dir: Path, host_port: int) -> None:
    path = cni_dir / "net.d" / "10-flatroute.conflist"
    conf = json.loads(path.read_text())
    assert [p["type"] for p in conf["plugins"]] == ["flatroute-cni", "portmap"]
    conf["plugins"][1]["runtimeConfig"] = {"portMappings": [
        {"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]}
    path.write_text(json.dumps(conf))


def _until(what: str, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def start(rt: Containerd, cni_dir: Path, cid: str, host_port: int) -> tuple[str, str]:
    """A container serving its own name over HTTP on port 80; its IPv4 and IPv6 address."""
    _map_port(cni_dir, host_port)
    proc = rt.run(cid, cni_dir, "/bin/sh", "-c",
                  f"echo {cid} > /www/index.html && exec httpd -f -p 80 -h /www")

    def up() -> bool:
        assert proc.poll() is None, f"ctr run {cid} exited: {proc.communicate()[0]}"
        return rt.running(cid)

    _until(f"container {cid}", up)
    addrs = rt.exec(cid, "ip", "-o", "addr", "show", "dev", "eth0", "scope", "global").stdout
    v4 = re.findall(r"inet (\S+)/32", addrs)
    v6 = re.findall(r"inet6 (\S+)/128", addrs)
    assert len(v4) == 1 and len(v6) == 1, addrs
    return v4[0], v6[0]


def _reaches(rt: Containerd, cid: str, *command: str) -> bool:
    for _ in range(10):  # the pod's link-local address may still be tentative (DAD)
        if rt.exec(cid, *command).returncode == 0:
            return True
        time.sleep(0.3)
    return False


# busybox's nc, not its wget (which crashes here, static glibc): the body is the last line
GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} {}"


def _http(ns: str, host: str, port: int) -> str:
    out = sh("timeout", "10", BUSYBOX, "sh", "-c", f"PATH=/nonexistent; {GET}".replace(
        "nc ", f"{BUSYBOX} nc ").format(host, port), ns=ns).stdout
    return out.strip().splitlines()[-1] if out.strip() else ""


def _http_from(rt: Containerd, cid: str, host: str) -> str:
    for _ in range(10):
        out = rt.exec(cid, "sh", "-c", GET.format(host, 80)).stdout.strip()
        if out:
            return out.splitlines()[-1]
        time.sleep(0.3)
    return ""


def assert_nothing_of_ours(node: Node, rt: Containerd) -> None:
    assert rt.containers() == []
    node.assert_clean()  # no flr veth, no route of ours, no reservation, no attachment
    nat = sh("iptables", "-t", "nat", "-S", ns=node.name).stdout
    assert "CNI-DN-" not in nat, nat  # portmap's per-container chains went with its DEL


def test_two_containers_on_one_node(node: Node, runtime: tuple[Containerd, Path]) -> None:
    rt, cni_dir = runtime
    service = Service(node)
    try:
        a4, a6 = start(rt, cni_dir, "ca", 18080)
        b4, b6 = start(rt, cni_dir, "cb", 18081)
        assert len(node.host_veths()) == 2 and len(node.reservations()) == 4
        assert _reaches(rt, "ca", "ping", "-c1", "-W2", b4)
        assert _reaches(rt, "cb", "ping6", "-c1", "-W2", a6)
        assert _http_from(rt, "ca", b6) == "cb"  # TCP both ways, both families
        assert _http_from(rt, "cb", a4) == "ca"
        # the host (the node namespace) and the ToR reach the ports portmap mapped
        assert _http(node.name, NODE_IP, 18080) == "ca"
        assert _http(node.tor, NODE_IP, 18081) == "cb"
        for cid in ("ca", "cb"):
            rt.stop(cid)
        assert_nothing_of_ours(node, rt)
        seen = [(r["command"], r["container_id"], r["exit"]) for r in service.requests(4)]
        ns = rt.name
        assert sorted(seen) == [("ADD", f"{ns}-ca", 0), ("ADD", f"{ns}-cb", 0),
                                ("DEL", f"{ns}-ca", 0), ("DEL", f"{ns}-cb", 0)]
    finally:
        service.stop()


def test_containers_with_the_service_stopped(node: Node,
                                             runtime: tuple[Containerd, Path]) -> None:
    """The service down: a new container is refused (try again later) and leaves nothing;
    running ones are removed (DEL queued) and the service finishes their DELs when back."""
    rt, cni_dir = runtime
    service = Service(node)
    try:
        start(rt, cni_dir, "ca", 18080)
        start(rt, cni_dir, "cb", 18081)
        assert service.stop() == 0
        out = rt.stop("ca") + rt.stop("cb")
        assert "failed" not in out and "error" not in out.lower(), out
        assert rt.containers() == []
        assert len(list(node.queue.glob("*.del"))) == 2
        # The namespaces are gone, and with them the veths and their routes; the addresses
        # stay reserved until the service runs the queued DELs.
        assert node.host_veths() == [] and node.our_routes() == []
        assert len(node.reservations()) == 4
        refused = rt.run("cc", cni_dir, "/bin/sleep", "600")
        text, _ = refused.communicate(timeout=60)
        rt.runs.pop("cc")
        assert refused.returncode != 0 and "try again later" in text, text
        assert node.host_veths() == [] and len(node.reservations()) == 4  # nothing done
        rt.remove("cc")  # ctr 1.6 leaves its created task and container behind on a failed run
        service = Service(node)  # back: the queue first
        _until("the queued DELs", lambda: not list(node.queue.glob("*.del")))
        assert_nothing_of_ours(node, rt)
        c4, _ = start(rt, cni_dir, "cd", 18082)
        assert c4 in node.reservations()
        assert _http(node.name, NODE_IP, 18082) == "cd"
        rt.stop("cd")
        assert_nothing_of_ours(node, rt)
    finally:
        service.stop()
