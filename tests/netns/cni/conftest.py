"""A node in a namespace for flatroute-cni: the plugin runs inside it (`ip netns exec`), so
nothing touches this machine's own namespace, /var/lib/cni or /run/flatroute."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni.install import install
from flatroute import CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL
from tests.netns_util import Netns, need_tool, sh

REF = "/usr/lib/cni"


class Node:
    def __init__(self, netns: Netns, tmp: Path) -> None:
        self.netns = netns
        self.tmp = tmp
        self.name = netns.add("node")
        self.tor = netns.add("tor")
        # An uplink and a default route, as on a real node: proxy ARP answers for the gateway
        # only when the node has a route to it through another interface.
        netns.veth(self.name, "up0", self.tor, "up0")
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "up0", ns=self.name)
        sh("ip", "addr", "add", "192.0.2.2/24", "dev", "up0", ns=self.tor)
        sh("ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "up0", "nodad", ns=self.name)
        sh("ip", "route", "add", "default", "via", "192.0.2.2", ns=self.name)
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8::2", ns=self.name)
        self.bin = tmp / "bin"
        install(str(self.bin), str(tmp / "net.d"))  # the interpreter a real install picks
        for plugin in ("host-local", "tuning", "bandwidth", "portmap"):
            if os.path.exists(f"{REF}/{plugin}"):
                os.symlink(f"{REF}/{plugin}", self.bin / plugin)
        self.data = tmp / "data"
        # The C client's service socket and deletion queue: the service is absent unless a
        # test starts `flatroute cni serve` (tests/netns/cni/test_cni_service.py); the other
        # tests run the Python plugin (flatroute-cni-py) itself, and no test ever reaches a
        # service or a queue this machine might have at the default paths.
        self.socket = tmp / "cni.sock"
        self.queue = tmp / "delete-queue"
        self.node_file = tmp / "node.json"
        self.write_node_file(["10.244.0.0/26"], ["fd00:10:244::/122"])

    def write_node_file(self, v4: list[str], v6: list[str], mtu: int = 1400) -> None:
        self.node_file.write_text(json.dumps({
            "version": 1, "node": "n1", "podBlocks": {"ipv4": v4, "ipv6": v6},
            "gateway": {"ipv4": "169.254.1.1", "ipv6": "fe80::1"}, "mtu": mtu,
            "routeProtocol": 70}))

    def conf(self, version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {"cniVersion": version, "name": "frnet", "type": "flatroute-cni",
                               "nodeFile": str(self.node_file), "dataDir": str(self.data)}
        doc.update(extra)
        return doc

    def pod(self) -> str:
        return self.netns.add("pod")

    def call(self, command: str, conf: dict[str, Any] | str, cid: str = "", ifname: str = "eth0",
             pod: str | None = None, plugin: str = "flatroute-cni-py",
             env: dict[str, str | None] | None = None) -> tuple[int, dict[str, Any] | None]:
        e = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname,
             "CNI_NETNS": f"/run/netns/{pod}" if pod else "", "CNI_PATH": str(self.bin),
             "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"),
             "FLATROUTE_CNI_SOCKET": str(self.socket),
             "FLATROUTE_CNI_DELETE_QUEUE": str(self.queue)}
        for key, value in (env or {}).items():
            if value is None:
                e.pop(key, None)
            else:
                e[key] = value
        e = {k: v for k, v in e.items() if v != ""}
        text = conf if isinstance(conf, str) else json.dumps(conf)
        proc = subprocess.run(["ip", "netns", "exec", self.name, str(self.bin / plugin)],
                              input=text, capture_output=True, text=True, env=e, timeout=30,
                              check=False)
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc.returncode, out

    def ok(self, command: str, conf: dict[str, Any], **kw: Any) -> dict[str, Any] | None:
        rc, out = self.call(command, conf, **kw)
        assert rc == 0, out
        return out

    # -- what is left behind --------------------------------------------------------------
    def host_veths(self) -> list[str]:
        out = sh("ip", "-o", "link", "show", ns=self.name).stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
                      if line.split(":")[1].strip().startswith("flr"))

    def routes(self, proto: int) -> list[str]:
        v4 = sh("ip", "route", "show", "proto", str(proto), ns=self.name).stdout.splitlines()
        v6 = sh("ip", "-6", "route", "show", "proto", str(proto), ns=self.name).stdout.splitlines()
        return v4 + v6

    def our_routes(self) -> list[str]:
        """The pods' host routes the plugin makes (flatroute.CNI_ROUTE_PROTOCOL)."""
        return self.routes(CNI_ROUTE_PROTOCOL)

    def speaker_routes(self) -> list[str]:
        """Routes of the speaker's protocol (and pod routes of plugins before 71)."""
        return self.routes(ROUTE_PROTOCOL)

    def reservations(self) -> list[str]:
        d = self.data / "frnet" / "ip"
        return sorted(os.listdir(d)) if d.exists() else []

    def attachments(self) -> list[str]:
        d = self.data / "frnet" / "att"
        return sorted(os.listdir(d)) if d.exists() else []

    def assert_clean(self) -> None:
        assert self.host_veths() == []
        assert self.our_routes() == []
        assert [r for r in self.speaker_routes() if " dev flr" in r] == []
        assert self.reservations() == []
        assert self.attachments() == []


class Service:
    """`flatroute cni serve` in the node namespace, on the node's socket and queue."""


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
                 "cni", "serve", "--socket", str(self.node.socket), "--read-timeout", "1",
                 "--delete-queue", str(self.node.queue)],
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


def pod_links(pod: str) -> list[str]:
    out = sh("ip", "-o", "link", "show", ns=pod).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def ping(pod: str, dst: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", pod, "ping", "-c1", "-W2", dst],
                          capture_output=True, check=False, timeout=10).returncode == 0


@pytest.fixture
def node(netns: Netns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    need_tool("ip", "ping", f"{REF}/host-local", f"{REF}/tuning")
    n = Node(netns, tmp_path)
    monkeypatch.setenv("FLATROUTE_CNI_SOCKET", str(n.socket))  # for tests that exec it directly
    monkeypatch.setenv("FLATROUTE_CNI_DELETE_QUEUE", str(n.queue))
    try:
        yield n
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
