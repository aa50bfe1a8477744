"""The fast path: the C client `flatroute-cni` + `flatroute cni serve`, in real namespaces.

The service runs inside the node namespace (as a node's would); the client reaches it through
FLATROUTE_CNI_SOCKET. Tests that must go through the service give the client a fallback that
does not exist, so a silent fallback to the Python plugin would fail them.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Node, ping, pod_links

from cni import wire

pytestmark = pytest.mark.root

NO_FALLBACK = {"FLATROUTE_CNI_FALLBACK": "/nonexistent/flatroute-cni-py"}


class Service:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.log = node.tmp / "serve.log"
        self.proc = self.spawn()
        deadline = time.monotonic() + 15
        while not node.socket.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the service did not create its socket"
            time.sleep(0.02)

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.node.name, sys.executable, "-m", "cli.main",
                 "cni", "serve", "--socket", str(self.node.socket), "--read-timeout", "1"],
                stdout=out, stderr=subprocess.STDOUT)

    def requests(self, at_least: int = 0) -> list[dict[str, Any]]:
        """The logged requests; each child logs after it answered, so wait for `at_least`."""
        deadline = time.monotonic() + 10
        while True:
            lines = [json.loads(line) for line in self.log.read_text().splitlines()
                     if line.startswith("{")]
            found = [line for line in lines if line["event"] == "cni_request"]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def service(node: Node) -> Iterator[Service]:
    s = Service(node)
    try:
        yield s
    finally:
        s.stop()


def raw(node: Node, data: bytes, *, close_early: bool = False) -> tuple[int, dict[str, Any]]:
    """Send raw bytes to the service; return the response's exit code and CNI object."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(node.socket))
        s.sendall(data)
        if close_early:
            return -1, {}
        code, out = wire.decode_response(wire.reader(s, 5))
    return code, json.loads(out)


def test_lifecycle_through_the_service(node: Node, service: Service) -> None:
    assert stat.S_IMODE(node.socket.stat().st_mode) == 0o600
    conf = node.conf()
    pod_a, pod_b = node.pod(), node.pod()
    res_a = node.ok("ADD", conf, cid="ca", pod=pod_a, env=NO_FALLBACK)
    res_b = node.ok("ADD", conf, cid="cb", pod=pod_b, env=NO_FALLBACK)
    assert res_a is not None and res_b is not None
    ips_a = [ip["address"] for ip in res_a["ips"]]
    ips_b = [ip["address"] for ip in res_b["ips"]]
    assert len(ips_a) == 2 and set(ips_a).isdisjoint(ips_b)
    assert pod_links(pod_a) == ["eth0", "lo"]
    assert ping(pod_a, ips_b[0].split("/")[0]) and ping(pod_a, ips_b[1].split("/")[0])
    assert ping(pod_a, "192.0.2.1")
    node.ok("CHECK", {**conf, "prevResult": res_a}, cid="ca", pod=pod_a, env=NO_FALLBACK)
    node.ok("DEL", conf, cid="ca", pod=pod_a, env=NO_FALLBACK)
    assert pod_links(pod_a) == ["lo"]
    rc, err = node.call("CHECK", {**conf, "prevResult": res_a}, cid="ca", pod=pod_a,
                        env=NO_FALLBACK)
    assert rc == 1 and err is not None and err["code"] == 3
    node.ok("DEL", conf, cid="ca", pod=pod_a, env=NO_FALLBACK)  # again
    node.ok("DEL", conf, cid="ca", env=NO_FALLBACK)  # without CNI_NETNS
    node.ok("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "cb",
                                                          "ifname": "eth0"}]}, env=NO_FALLBACK)
    assert len(node.host_veths()) == 1 and ping(pod_b, "192.0.2.1")
    node.ok("GC", {**conf, "cni.dev/valid-attachments": []}, env=NO_FALLBACK)
    node.assert_clean()
    node.ok("STATUS", conf, env=NO_FALLBACK)
    version = node.ok("VERSION", {"cniVersion": "0.4.0"}, env=NO_FALLBACK)
    assert version is not None and version["cniVersion"] == "0.4.0"
    seen = [(r["command"], r["container_id"], r["exit"]) for r in service.requests(11)]
    assert seen == [("ADD", "ca", 0), ("ADD", "cb", 0), ("CHECK", "ca", 0), ("DEL", "ca", 0),
                    ("CHECK", "ca", 1), ("DEL", "ca", 0), ("DEL", "ca", 0), ("GC", "", 0),
                    ("GC", "", 0), ("STATUS", "", 0), ("VERSION", "", 0)]
    assert service.stop() == 0
    assert not node.socket.exists()


def test_concurrent_adds_through_the_service(node: Node, service: Service) -> None:
    """Two clients, 50 ADDs each, at once: every address unique and accounted for."""
    node.write_node_file(["10.244.0.0/24"], ["fd00:10:244::/120"])
    conf = node.conf()
    pods = [node.pod(), node.pod()]
    results: dict[str, list[tuple[int, Any]]] = {"a": [], "b": []}

    def client(tag: str, pod: str) -> None:
        for i in range(50):
            results[tag].append(node.call("ADD", conf, cid=f"{tag}{i}", ifname=f"eth{i}",
                                          pod=pod, env=NO_FALLBACK))

    threads = [threading.Thread(target=client, args=(tag, pod))
               for tag, pod in zip("ab", pods, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    outs = results["a"] + results["b"]
    assert len(outs) == 100 and all(rc == 0 for rc, _ in outs), [o for o in outs if o[0]][:3]
    addresses = [ip["address"].split("/")[0] for _, r in outs for ip in r["ips"]]
    assert len(addresses) == 200 and len(set(addresses)) == 200
    assert sorted(node.reservations()) == sorted(addresses)
    assert len(node.attachments()) == 100 and len(node.host_veths()) == 100
    assert len(service.requests(100)) == 100
    node.ok("GC", {**conf, "cni.dev/valid-attachments": []}, env=NO_FALLBACK)
    node.assert_clean()


def test_fallback_without_the_service(node: Node) -> None:
    """No service: the client execs flatroute-cni-py with the same stdin; results are the same."""
    conf = node.conf()
    pod = node.pod()
    assert not node.socket.exists()
    node.ok("STATUS", conf)
    res = node.ok("ADD", conf, cid="c1", pod=pod)
    assert res is not None and len(res["ips"]) == 2 and ping(pod, "192.0.2.1")
    node.ok("CHECK", {**conf, "prevResult": res}, cid="c1", pod=pod)
    # A stale socket (nobody listening: ECONNREFUSED) falls back too.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(node.socket))
    stale.close()
    node.ok("DEL", conf, cid="c1", pod=pod)
    rc, err = node.call("ADD", "{not json", cid="c2", pod=pod)
    assert rc == 1 and err is not None and err["code"] == 6
    node.assert_clean()
    # Neither the service nor the Python plugin: STATUS says not available (50).
    rc, err = node.call("STATUS", conf, env=NO_FALLBACK)
    assert rc == 1 and err is not None and err["code"] == 50, err
    assert "neither" in err["msg"]


def test_service_survives_clients_that_go_away(node: Node, service: Service) -> None:
    conf = node.conf()
    pod_a, pod_b = node.pod(), node.pod()
    raw(node, wire.MAGIC + (2).to_bytes(4, "big"), close_early=True)  # mid-frame
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "gone", "CNI_IFNAME": "eth0",
           "CNI_NETNS": f"/run/netns/{pod_a}", "CNI_PATH": str(node.bin)}
    raw(node, wire.encode_request(env, json.dumps(conf).encode()), close_early=True)
    deadline = time.monotonic() + 15
    while not any(r["container_id"] == "gone" for r in service.requests()):
        assert time.monotonic() < deadline, service.log.read_text()
        time.sleep(0.05)
    res = node.ok("ADD", conf, cid="kept", pod=pod_b, env=NO_FALLBACK)
    assert res is not None and ping(pod_b, "192.0.2.1")
    assert service.proc.poll() is None
    node.ok("DEL", conf, cid="gone", pod=pod_a, env=NO_FALLBACK)
    node.ok("DEL", conf, cid="kept", pod=pod_b, env=NO_FALLBACK)
    node.assert_clean()


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.0\r\n\r\n",
    wire.MAGIC + (1000).to_bytes(4, "big"),
    wire.MAGIC + (1).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"FOO=1",
    wire.MAGIC + (0).to_bytes(4, "big") + (1 << 30).to_bytes(4, "big"),
    wire.MAGIC + (0).to_bytes(4, "big") + (100).to_bytes(4, "big") + b"{}",  # then silence
    b"",  # connect and say nothing
], ids=["garbage", "too-many-entries", "unknown-variable", "huge-stdin", "short-stdin",
        "silent"])
@pytest.mark.usefixtures("service")
def test_bad_framing_gets_a_cni_error(node: Node, data: bytes) -> None:
    start = time.monotonic()
    code, err = raw(node, data)
    assert code == 1 and err["code"] == 6 and "malformed request" in err["msg"], err
    assert time.monotonic() - start < 4  # the service's read timeout is 1 s here
    version = node.ok("VERSION", {"cniVersion": "1.1.0"}, env=NO_FALLBACK)
    assert version is not None


def test_one_service_per_socket_and_sigterm_cleans_up(node: Node, service: Service) -> None:
    second = service.spawn()
    assert second.wait(timeout=15) == 1
    assert "already listening" in service.log.read_text()
    assert node.socket.exists()
    assert service.stop() == 0
    assert not node.socket.exists()
    assert not [p for p in os.listdir(node.tmp) if p.startswith(".cni-")]
