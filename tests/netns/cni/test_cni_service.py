"""The fast path: the C client `flatroute-cni` + `flatroute cni serve`, in real namespaces.

The service runs inside the node namespace (as a node's would); the client reaches it through
FLATROUTE_CNI_SOCKET, and its deletion queue is FLATROUTE_CNI_DELETE_QUEUE. The client never
runs the Python plugin: without the service, ADD and CHECK say try again (11), STATUS not
available (50), and DEL is queued for the service to run when it is back.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Node, Service, ping, pod_links

from cni import wire

pytestmark = pytest.mark.root

CLIENT = "flatroute-cni"  # the static C client install builds


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
    res_a = node.ok("ADD", conf, cid="ca", pod=pod_a, plugin=CLIENT)
    res_b = node.ok("ADD", conf, cid="cb", pod=pod_b, plugin=CLIENT)
    assert res_a is not None and res_b is not None
    ips_a = [ip["address"] for ip in res_a["ips"]]
    ips_b = [ip["address"] for ip in res_b["ips"]]
    assert len(ips_a) == 2 and set(ips_a).isdisjoint(ips_b)
    assert pod_links(pod_a) == ["eth0", "lo"]
    assert ping(pod_a, ips_b[0].split("/")[0]) and ping(pod_a, ips_b[1].split("/")[0])
    assert ping(pod_a, "192.0.2.1")
    node.ok("CHECK", {**conf, "prevResult": res_a}, cid="ca", pod=pod_a, plugin=CLIENT)
    node.ok("DEL", conf, cid="ca", pod=pod_a, plugin=CLIENT)
    assert pod_links(pod_a) == ["lo"]
    rc, err = node.call("CHECK", {**conf, "prevResult": res_a}, cid="ca", pod=pod_a,
                        plugin=CLIENT)
    assert rc == 1 and err is not None and err["code"] == 3
    node.ok("DEL", conf, cid="ca", pod=pod_a, plugin=CLIENT)  # again
    node.ok("DEL", conf, cid="ca", plugin=CLIENT)  # without CNI_NETNS
    node.ok("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "cb",
                                                          "ifname": "eth0"}]}, plugin=CLIENT)
    assert len(node.host_veths()) == 1 and ping(pod_b, "192.0.2.1")
    node.ok("GC", {**conf, "cni.dev/valid-attachments": []}, plugin=CLIENT)
    node.assert_clean()
    node.ok("STATUS", conf, plugin=CLIENT)
    version = node.ok("VERSION", {"cniVersion": "0.4.0"}, plugin=CLIENT)
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
                                          pod=pod, plugin=CLIENT))

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
    node.ok("GC", {**conf, "cni.dev/valid-attachments": []}, plugin=CLIENT)
    node.assert_clean()


def _events(service: Service, event: str, at_least: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        found = [json.loads(line) for line in service.log.read_text().splitlines()
                 if line.startswith("{") and f'"{event}"' in line]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_client_without_the_service_queues_del(node: Node) -> None:
    """No service (no socket, then a stale one): no Python runs; ADD/CHECK/GC 11, STATUS 50,
    VERSION answered by the client, DEL queued and finished by the service once it starts."""
    conf = node.conf()
    pod = node.pod()
    res = node.ok("ADD", conf, cid="c1", pod=pod)  # made by the Python plugin, before
    assert res is not None and not node.socket.exists()
    for verb, extra, code in (("ADD", {}, 11), ("CHECK", {"prevResult": res}, 11),
                              ("GC", {"cni.dev/valid-attachments": []}, 11), ("STATUS", {}, 50)):
        rc, err = node.call(verb, {**conf, **extra}, cid="c2", pod=pod, plugin=CLIENT)
        assert rc == 1 and err is not None and err["code"] == code, (verb, err)
        assert "not running" in err["msg"] and str(node.socket) in err["msg"]
    version = node.ok("VERSION", {"cniVersion": "1.1.0"}, plugin=CLIENT)
    assert version == {"cniVersion": "1.1.0",
                       "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(node.socket))  # nobody listening: ECONNREFUSED, the same as no socket
    stale.close()
    assert node.call("DEL", conf, cid="c1", pod=pod, plugin=CLIENT) == (0, None)
    entries = sorted(p.name for p in node.queue.iterdir())
    assert len(entries) == 1 and entries[0].endswith(".del")
    assert stat.S_IMODE((node.queue / entries[0]).stat().st_mode) == 0o600
    env, stdin = wire.decode_request(_file_reader(node.queue / entries[0]))
    assert env["CNI_COMMAND"] == "DEL" and env["CNI_CONTAINERID"] == "c1"
    assert json.loads(stdin) == conf
    (node.queue / "000000000000.000000000-1.del").write_bytes(  # not a DEL: set aside
        wire.encode_request({"CNI_COMMAND": "ADD"}, b"{}"))
    assert len(node.host_veths()) == 1 and len(node.reservations()) == 2  # nothing done yet
    service = Service(node)
    try:
        assert [e["container_id"] for e in _events(service, "cni_queued_delete", 1)] == ["c1"]
        assert len(_events(service, "cni_queued_delete_refused", 1)) == 1
        node.assert_clean()
        assert sorted(p.name for p in node.queue.iterdir()) == [
            "000000000000.000000000-1.del.failed"]
        # While it runs, an entry that appears (written in the window before the socket is in
        # place) is run too.
        res = node.ok("ADD", conf, cid="c3", pod=pod, plugin=CLIENT)
        frame = wire.encode_request({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c3",
                                     "CNI_IFNAME": "eth0", "CNI_PATH": str(node.bin)},
                                    json.dumps(conf).encode())
        (node.queue / "999999999999.000000000-1.del").write_bytes(frame)
        assert len(_events(service, "cni_queued_delete", 2)) == 2
        node.assert_clean()
    finally:
        service.stop()


def _file_reader(path: Any) -> Any:
    data = path.read_bytes()
    pos = [0]

    def read(n: int) -> bytes:
        assert pos[0] + n <= len(data)
        pos[0] += n
        return bytes(data[pos[0] - n:pos[0]])

    return read


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
    res = node.ok("ADD", conf, cid="kept", pod=pod_b, plugin=CLIENT)
    assert res is not None and ping(pod_b, "192.0.2.1")
    assert service.proc.poll() is None
    node.ok("DEL", conf, cid="gone", pod=pod_a, plugin=CLIENT)
    node.ok("DEL", conf, cid="kept", pod=pod_b, plugin=CLIENT)
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
    version = node.ok("VERSION", {"cniVersion": "1.1.0"}, plugin=CLIENT)
    assert version is not None


def test_one_service_per_socket_and_sigterm_cleans_up(node: Node, service: Service) -> None:
    second = service.spawn()
    assert second.wait(timeout=15) == 1
    assert "already listening" in service.log.read_text()
    assert node.socket.exists()
    assert service.stop() == 0
    assert not node.socket.exists()
    assert not [p for p in os.listdir(node.tmp) if p.startswith(".cni-")]
